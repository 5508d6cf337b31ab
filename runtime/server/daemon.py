"""The serving daemon: a model holder behind an HTTP server, with start, stop and signal handling.

`Daemon(holder, config).start()` binds and serves on a background thread (tests and the device
agent use this); `serve_until_signal()` blocks until SIGTERM/SIGINT and then shuts down
gracefully: stop accepting, report not ready, let in-flight requests finish (bounded by
`grace_seconds`), stop the micro-batcher.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field

from edgeml.errors import UsageError

from ..batching import BatchOptions
from ..metrics import ServerMetrics
from .holder import ModelHolder
from .http import ServerLimits, ServerState, TCPServer, UnixServer


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080  # 0 = any free port
    unix_socket: str | None = None  # serve on this Unix socket instead of TCP
    limits: ServerLimits = field(default_factory=ServerLimits)
    batch: BatchOptions = field(default_factory=BatchOptions)
    grace_seconds: float = 10.0
    cache_size: int = 0  # prediction cache entries (edgeml serve --cache); 0 = off


class Daemon:
    def __init__(self, config: ServeConfig | None = None, holder: ModelHolder | None = None) -> None:
        self.config = config or ServeConfig()
        self.metrics = holder.metrics if holder else ServerMetrics()
        self.holder = holder or ModelHolder(self.config.batch, self.metrics, self.config.cache_size)
        self.state = ServerState(self.holder, self.metrics, self.config.limits)
        self._server: TCPServer | UnixServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the daemon is not started")
        return self._server.url

    def start(self) -> "Daemon":
        c = self.config
        try:
            if c.unix_socket:
                self._server = UnixServer(c.unix_socket, self.state)
            else:
                self._server = TCPServer((c.host, c.port), self.state)
        except OSError as exc:
            where = c.unix_socket or f"{c.host}:{c.port}"
            raise UsageError(f"cannot listen on {where}: {exc.strerror or exc}; choose another --port/--host") from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgeml-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> bool:
        """Stop serving; True when every in-flight request finished within the grace period."""
        self.state.draining = True
        server = self._server
        if server is None:
            return True
        server.shutdown()  # no new connections are accepted after this returns
        server.server_close()
        finished = self.state.wait_idle(self.config.grace_seconds)
        self.holder.close()
        self._server = None
        return finished

    def request_stop(self, *_args) -> None:
        """Signal-handler safe: ask `serve_until_signal` to return."""
        self._stop.set()

    def serve_until_signal(self) -> bool:
        """Serve until SIGTERM or SIGINT (main thread only), then stop gracefully."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self._server is None:
                self.start()
            while not self._stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.stop()
