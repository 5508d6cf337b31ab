"""Pick the artifact of a bundle this device should run.

Candidates are the artifacts that passed validation at conversion (their task's bound; a failed one
is never selected, whatever the preference) and whose backend is installed here and runs their format.
A bundle with no passing artifact is refused with its failures named. They are ranked by a precision order, then a backend order; both have
defaults, can be set for a device with environment variables, and can be given per call.
An int8 artifact that conversion measured slower than fp32 ranks just after fp32.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from edgeml.errors import BundleError, UsageError
from edgeml.manifest import ArtifactEntry, Manifest

from .backends import BACKEND_MODULES, get_backend

AUTO = "auto"
PRECISIONS = ("fp32", "fp16", "int8")
# int8 is the smallest and usually the fastest on CPUs; fp16 mostly upcasts on CPUs, so it comes last.
DEFAULT_PRECISION_ORDER = ("int8", "fp32", "fp16")
DEFAULT_BACKEND_ORDER = ("openvino", "onnxruntime", "litert")
PRECISION_ENV = "EDGEML_PRECISION_ORDER"  # e.g. "fp32,int8"
BACKEND_ENV = "EDGEML_BACKEND_ORDER"  # e.g. "litert,onnxruntime"

Choice = str | Sequence[str]


@dataclass(frozen=True)
class Preference:
    """Ordered backends and precisions; only these are considered."""

    backends: tuple[str, ...]
    precisions: tuple[str, ...]

    @classmethod
    def resolve(cls, backend: Choice = AUTO, precision: Choice = AUTO) -> "Preference":
        backends = _order(backend, BACKEND_ENV, DEFAULT_BACKEND_ORDER, tuple(BACKEND_MODULES), "backend")
        precisions = _order(precision, PRECISION_ENV, DEFAULT_PRECISION_ORDER, PRECISIONS, "precision")
        # Backends registered later than the defaults still take part, after them.
        if _is_auto(backend) and not os.environ.get(BACKEND_ENV):
            backends += tuple(b for b in BACKEND_MODULES if b not in backends)
        return cls(backends, precisions)


def _is_auto(value: Choice) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def _order(value: Choice, env: str, default: tuple[str, ...], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    if _is_auto(value):
        text = os.environ.get(env, "")
        source = f"${env}"
        items = [v.strip().lower() for v in text.split(",") if v.strip()] if text else list(default)
    else:
        source = what
        items = [value.strip().lower()] if isinstance(value, str) else [str(v).strip().lower() for v in value]
        items = [i for part in items for i in part.split(",") if i]
    bad = [i for i in items if i not in known]
    if bad and source == what:
        raise UsageError(f"unknown {what} {', '.join(map(repr, bad))}; choose from {', '.join(known)} or auto")
    if bad:
        raise UsageError(f"{source} names unknown {what}(s) {', '.join(map(repr, bad))}; choose from {', '.join(known)}")
    return tuple(dict.fromkeys(items))


def _runnable(artifact: ArtifactEntry) -> str | None:
    """Why this device cannot run the artifact, or None when it can."""
    if not passed_validation(artifact):
        return "failed validation at conversion"
    if artifact.backend not in BACKEND_MODULES:
        return f"backend {artifact.backend!r} is unknown to this edgeml"
    backend = get_backend(artifact.backend)
    if artifact.format not in backend.formats:
        return f"backend {artifact.backend} does not run {artifact.format}"
    if not backend.available():
        return f"backend {artifact.backend} is not installed (pip install 'edgeml[{artifact.backend}]')"
    return None


def candidates(manifest: Manifest, preference: Preference) -> list[ArtifactEntry]:
    """Runnable artifacts allowed by the preference, best first."""
    def rank(a: ArtifactEntry) -> tuple[float, int]:
        p = preference.precisions.index(a.precision)
        if a.precision == "int8" and a.details.get("slower_than_fp32") and "fp32" in preference.precisions:
            p = preference.precisions.index("fp32") + 0.5
        return (p, preference.backends.index(a.backend))

    allowed = [a for a in manifest.artifacts
               if a.precision in preference.precisions and a.backend in preference.backends and _runnable(a) is None]
    return sorted(allowed, key=rank)


def passed_validation(artifact: ArtifactEntry) -> bool:
    """True only for an artifact whose conversion report says it met its bound (missing: not passed)."""
    return artifact.validation.get("passed") is True


def select_artifact(manifest: Manifest, preference: Preference) -> ArtifactEntry:
    found = candidates(manifest, preference)
    if found:
        return found[0]
    if not any(passed_validation(a) for a in manifest.artifacts):
        failed = [f"{a.key}: {'; '.join(map(str, a.validation.get('failures') or [])) or 'failed'}" for a in manifest.artifacts]
        failed += [f"{f.key} (not shipped): {f.reason}" for f in manifest.failed]
        raise BundleError(f"bundle {manifest.name}-{manifest.version} has no artifact that passed validation at conversion"
                          + (f" ({' | '.join(failed)[:1500]})" if failed else "") + "; convert it again")
    reasons = []
    for a in manifest.artifacts:
        why = _runnable(a)
        if why is None:
            why = "not among the requested backends/precisions"
        reasons.append(f"{a.key} on {a.backend}: {why}")
    wanted = f"backends {', '.join(preference.backends)}; precisions {', '.join(preference.precisions)}"
    raise BundleError(f"bundle {manifest.name}-{manifest.version} has no artifact this device can run ({wanted}). "
                      + ("; ".join(reasons) if reasons else "It lists no artifacts."))
