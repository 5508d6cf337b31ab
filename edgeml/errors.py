"""One exception family for every user-facing failure.

`EdgeMLError` is a `click.ClickException`, so the CLI prints `Error: <message>` and exits non-zero,
never a traceback. Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

import click


class EdgeMLError(click.ClickException):
    """Base of every error a user can cause or fix."""

    exit_code = 1


class UsageError(EdgeMLError):
    """An option or argument does not make sense."""

    exit_code = 2


class SourceError(EdgeMLError):
    """The source model is missing, corrupt or cannot be read."""


class UnsupportedModelError(EdgeMLError):
    """The model type or combination is not supported; the message names what is."""


class DataError(EdgeMLError):
    """Calibration, validation or inference data does not fit the model's schema."""


class ConversionError(EdgeMLError):
    """An exporter or quantizer failed."""


class ValidationFailed(EdgeMLError):
    """An artifact does not match the source model within tolerance."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class OutputExistsError(EdgeMLError):
    """Refusing to overwrite an existing output."""


class KeyFileError(EdgeMLError):
    """A signing or verification key is missing or malformed."""


class BundleError(EdgeMLError):
    """A bundle is malformed: missing manifest, bad JSON, unknown format version."""


class IntegrityError(BundleError):
    """A bundle's signature or a file's hash does not match."""


class MissingDependencyError(EdgeMLError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'edgeml[{extra}]'")
        self.package = package
        self.extra = extra


def require(module: str, extra: str, package: str | None = None):
    """Import an optional dependency or raise MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise
        raise MissingDependencyError(package or top, extra) from exc
