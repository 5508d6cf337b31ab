"""Backend registry: name -> module, imported only when that backend is asked for."""

from __future__ import annotations

import importlib

from edgeml.errors import UsageError

from .base import Backend, BackendOptions, Session

# Each module defines BACKEND, an object following the Backend protocol.
BACKEND_MODULES: dict[str, str] = {
    "onnxruntime": "edgeml.runtime.backends.onnxruntime",
    "litert": "edgeml.runtime.backends.litert",
    "openvino": "edgeml.runtime.backends.openvino",
}

_loaded: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    if name not in BACKEND_MODULES:
        raise UsageError(f"unknown backend {name!r}; known backends: {', '.join(BACKEND_MODULES)}")
    if name not in _loaded:
        _loaded[name] = importlib.import_module(BACKEND_MODULES[name]).BACKEND
    return _loaded[name]


def available_backends() -> list[str]:
    return [name for name in BACKEND_MODULES if get_backend(name).available()]


__all__ = ["Backend", "BackendOptions", "Session", "get_backend", "available_backends", "BACKEND_MODULES"]
