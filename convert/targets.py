"""One requested target (format, precision): export, validate on its backend, keep or drop it.

A target either yields a validated artifact (kept in the bundle when it meets its bound, or when
--allow-degraded keeps it marked failed) or a `FailedTarget` with its reason: an exporter or
quantizer error, any crash of a converter (its first line, never a traceback), a backend that cannot
load or run the artifact, or the missed bound. A failed target leaves no file in the staging bundle.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from edgeml.bundle import BundleBuilder
from edgeml.errors import EdgeMLError, UsageError
from edgeml.manifest import ARTIFACTS_DIR, ArtifactEntry, FailedTarget
from edgeml.runtime.backends import BackendOptions, get_backend
from edgeml.schema import Schema, TensorSpec

from .execution import batch_size, measure_latency, run_all
from .exporters import ExportContext, Exporter
from .options import Precision
from .validate import TaskInfo, ValidationReport, validate

Outputs = dict[str, np.ndarray]
T = TypeVar("T")


@dataclass
class ArtifactResult:
    entry: ArtifactEntry
    report: ValidationReport


class TargetFailed(Exception):
    """Internal: carries the failure of one target out of its steps."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def crash_reason(exc: BaseException) -> str:
    """An exception as one line: an EdgeMLError's message, else its type and first line."""
    if isinstance(exc, EdgeMLError):
        return exc.message
    text = str(exc).strip()
    first = text.splitlines()[0][:400] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def run_target(exp: Exporter, precision: Precision, ctx: ExportContext, builder: BundleBuilder, reference: Outputs,
               info: TaskInfo, step: Callable[[str], None]) -> ArtifactResult | FailedTarget:
    """Export and validate one target; the result, or the reason it failed (its files removed)."""
    options, source, validation = ctx.options, ctx.source, ctx.validation
    key = f"{exp.format}/{precision.value}"
    before = _artifact_names(builder.root)
    try:
        step(f"exporting {key}")
        artifact = _guard("export", lambda: exp.export(ctx, precision))
        step(f"validating {key} on {exp.backend}")
        schema = _artifact_schema(source.schema, artifact.details)
        session = _guard("validation", lambda: get_backend(exp.backend).load(
            builder.root / artifact.path, BackendOptions(threads=1, precision=precision.value)))
        actual = _guard("validation", lambda: run_all(session.run, validation.feeds, schema))
        # An artifact whose outputs cannot even be compared (a different batch or shape) fails this target.
        report = _guard("validation", lambda: validate(reference, actual, source.comparable_outputs, info,
                                                       options.tolerance_for(precision, info.task),
                                                       validation.labels, validation.source))
        sample = _latency_sample(validation.feeds, batch_size(schema) or 1)
        latency = _guard("validation", lambda: measure_latency(session.run, sample, runs=options.latency_runs))
    except TargetFailed as failed:
        _remove_new(builder.root, before)
        return FailedTarget(exp.format, precision.value, exp.backend, failed.stage, failed.reason)
    if not report.passed and not options.allow_degraded:
        _remove_new(builder.root, before)
        return FailedTarget(exp.format, precision.value, exp.backend, "validation",
                            "; ".join(report.failures), report.to_dict())
    entry = ArtifactEntry(exp.format, precision.value, exp.backend, artifact.path,
                          builder.entries_under(artifact.files_root), report.to_dict(), latency, artifact.details)
    return ArtifactResult(entry, report)


def _guard(stage: str, fn: Callable[[], T]) -> T:
    """Run one step; a usage mistake stops the command, anything else fails this target only."""
    try:
        return fn()
    except UsageError:
        raise
    except Exception as exc:  # a converter crash is this target's failure reason, never a traceback
        raise TargetFailed(stage, crash_reason(exc)) from None


def _artifact_names(root: Path) -> set[str]:
    base = root / ARTIFACTS_DIR
    return {p.name for p in base.iterdir()} if base.is_dir() else set()


def _remove_new(root: Path, before: set[str]) -> None:
    """Delete what a failed target wrote under artifacts/ (nothing of it is shipped)."""
    for name in _artifact_names(root) - before:
        path = root / ARTIFACTS_DIR / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _latency_sample(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """One sample (dynamic batch), or the artifact's fixed batch made by repeating the first sample."""
    return {k: np.repeat(v[:1], batch, axis=0) for k, v in feeds.items()}


def _artifact_schema(schema: Schema, details: dict) -> Schema:
    """The source schema, with the batch axis pinned when the artifact records a fixed batch."""
    fixed = details.get("fixed_batch")
    if not fixed:
        return schema
    inputs = [TensorSpec(s.name, s.dtype, [fixed, *s.shape[1:]], s.feature_names) for s in schema.inputs]
    return Schema(inputs=inputs, outputs=schema.outputs)
