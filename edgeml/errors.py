"""One exception family for every failure a user can cause or fix.

`EdgeMLError` is a plain exception with a `reason` code (a short, stable string such as
`"bad_input"` or `"not_found"`) and a `message` that says what was wrong and what to do about it.
It knows nothing about its callers: the CLI turns it into `Error: <message>` at its boundary
(edgeml/cli.py), the device server and the fleet API map reason codes to HTTP statuses in one table
each (runtime/server/http.py, fleet/api.py). Library code such as `Model.predict` therefore raises
an ordinary exception, never a CLI type.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class EdgeMLError(Exception):
    """Base of every error a user can cause or fix; `reason` is a stable code, `message` the text."""

    reason = "error"
    exit_code = 1  # the CLI's exit status for this error

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class UsageError(EdgeMLError):
    """An option or argument does not make sense."""

    reason = "usage"
    exit_code = 2


class SourceError(EdgeMLError):
    """The source model is missing, corrupt or cannot be read."""

    reason = "bad_source"


class UnsupportedModelError(EdgeMLError):
    """The model type or combination is not supported; the message names what is."""

    reason = "unsupported"


class DataError(EdgeMLError):
    """Calibration, validation or inference data does not fit the model's schema."""

    reason = "bad_input"


class ConversionError(EdgeMLError):
    """An exporter or quantizer failed."""

    reason = "conversion_failed"


class ValidationFailed(EdgeMLError):
    """An artifact does not match the source model within tolerance."""

    reason = "validation_failed"

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class OutputExistsError(EdgeMLError):
    """Refusing to overwrite an existing output."""

    reason = "exists"


class KeyFileError(EdgeMLError):
    """A signing or verification key is missing or malformed."""

    reason = "bad_key"


class BundleError(EdgeMLError):
    """A bundle is malformed: missing manifest, bad JSON, unknown format version."""

    reason = "bad_bundle"


class IntegrityError(BundleError):
    """A bundle's signature or a file's hash does not match."""

    reason = "integrity"


class NotFoundError(EdgeMLError):
    """A named thing (model, version, device, rollout) does not exist."""

    reason = "not_found"


class ConflictError(EdgeMLError):
    """The request contradicts the current state (already exists, stale action)."""

    reason = "conflict"


class MissingDependencyError(EdgeMLError):
    """An optional dependency is not installed; the message names the extra."""

    reason = "missing_dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'edgeml[{extra}]'")
        self.package = package
        self.extra = extra


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import an optional dependency or raise MissingDependencyError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise
        raise MissingDependencyError(package or top, extra) from exc
