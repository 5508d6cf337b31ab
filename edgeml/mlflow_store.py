"""MLflow tracking and registry access shared by `edgeml train --mlflow` and `edgeml convert models:/…`.

Decisions (user-visible):
- The package is mlflow-skinny (the `mlflow` extra): it has the tracking client, the registry, the
  sklearn/pytorch flavours and pyfunc, and installs beside the convert stack (full mlflow does not).
- A plain directory store (`file:./mlruns` or a bare path) works as given: MLflow 3 refuses its file
  store unless MLFLOW_ALLOW_FILE_STORE is set, so edgeml sets it (in its own process only, and only
  when the URI is a file store and the user has not set the variable). `sqlite:///mlflow.db` is
  MLflow's recommended backend and needs sqlalchemy and alembic beside mlflow-skinny.
- The URI is checked (one cheap request, no retries) before any training starts, so a wrong URI or
  an unreachable server fails in seconds with one `Error:` line, not after the training.
- Every MLflow failure becomes a TrackingError (reason "tracking") naming the URI and the action.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator
from urllib.parse import urlparse

from .errors import EdgeMLError, UsageError, require

FILE_SCHEMES = ("", "file")
TRACKING_ENV = "MLFLOW_TRACKING_URI"
# The pre-flight check must answer fast: MLflow's default is 7 retries with exponential backoff.
CHECK_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingError(EdgeMLError):
    """The MLflow tracking server or store refused or failed a request."""

    reason = "tracking"


def is_file_store(uri: str) -> bool:
    return urlparse(uri).scheme in FILE_SCHEMES


def absolute_file_uri(uri: str) -> str:
    """`file:./mlruns` or a bare path, made absolute against the current directory now: mlflow keeps the
    URI process-wide (and in $MLFLOW_TRACKING_URI), so a relative one would follow later chdirs."""
    from pathlib import Path

    parsed = urlparse(uri)
    if parsed.scheme == "file" and (parsed.netloc or uri.startswith("file:/")):
        return uri  # file:///abs or file://host/abs
    path = parsed.path if parsed.scheme == "file" else uri
    return Path(path).expanduser().absolute().as_uri()


def connect(uri: str | None) -> ModuleType:
    """Import mlflow (naming the extra when missing), point it at `uri` (None: $MLFLOW_TRACKING_URI)."""
    mlflow = require("mlflow", "mlflow")
    uri = uri or os.environ.get(TRACKING_ENV)
    if not uri:
        raise UsageError(f"no MLflow tracking URI: set {TRACKING_ENV} to the URI given to `edgeml train --mlflow` "
                         "(e.g. file:./mlruns, sqlite:///mlflow.db or http://host:5000)")
    if is_file_store(uri):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = absolute_file_uri(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no INFO lines (db migrations, "View run at") in our output
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow


@contextmanager
def tracking_errors(uri: str, action: str) -> Iterator[None]:
    """Turn whatever MLflow (or its store: HTTP, SQLAlchemy, files) raises into one TrackingError."""
    try:
        yield
    except EdgeMLError:
        raise
    except ImportError as exc:  # e.g. sqlite:/// without sqlalchemy/alembic
        raise TrackingError(f"MLflow at {uri}: {action} needs the package {exc.name or exc}; install it beside mlflow-skinny") from None
    except Exception as exc:  # noqa: BLE001 - the boundary: every MLflow failure is one clear line
        raise TrackingError(f"MLflow at {uri}: {action} failed: {_first_line(exc)}") from None


def check(uri: str, registry: bool = False) -> None:
    """Fail fast when the store cannot be reached or used (and the registry, when `registry`)."""
    mlflow = connect(uri)
    saved = {k: os.environ.get(k) for k in CHECK_ENV}
    os.environ.update(CHECK_ENV)
    try:
        with tracking_errors(uri, "connecting"):
            client = mlflow.MlflowClient()
            client.search_experiments(max_results=1)
            if registry:
                client.search_registered_models(max_results=1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:297] + "..."
