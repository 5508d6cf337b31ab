"""The `edgeml serve` daemon: Open Inference Protocol (KServe v2) REST and Prometheus metrics.

Standard library only (no web framework on the device). Modules: `protocol` (OIP JSON bodies),
`binary` (the binary tensor data extension), `holder` (the swappable served model), `cache` (the
prediction cache), `connections` (admission, eviction, read deadlines), `http` (servers and the
request handler), `daemon` (start/stop, signals).
"""

from __future__ import annotations

from .cache import CacheStats
from .daemon import Daemon, ServeConfig
from .holder import ModelHolder, Served
from .http import ServerLimits

__all__ = ["CacheStats", "Daemon", "ServeConfig", "ModelHolder", "Served", "ServerLimits"]
