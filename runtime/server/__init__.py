"""The `edgeml serve` daemon: Open Inference Protocol (KServe v2) REST and Prometheus metrics.

Standard library only (no web framework on the device). Modules: `protocol` (OIP JSON bodies),
`holder` (the swappable served model), `http` (servers and the request handler), `daemon`
(start/stop, signals).
"""

from __future__ import annotations

from .daemon import Daemon, ServeConfig
from .holder import ModelHolder, Served
from .http import ServerLimits

__all__ = ["Daemon", "ServeConfig", "ModelHolder", "Served", "ServerLimits"]
