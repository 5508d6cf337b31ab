"""The HTTP layer of `edgeml serve`: standard-library servers (TCP or Unix socket) and one handler.

Keep-alive HTTP/1.1, one write per response, TCP_NODELAY: a request on loopback costs tens of
microseconds beyond the model. Client mistakes are answered 4xx with `{"error": "..."}` and counted
(malformed request heads too); the daemon never crashes on a request and answers 500 only for its
own faults. Errors are `EdgeMLError`s; `STATUS_BY_REASON` is the one table from their reason code
to the HTTP status. Slow clients: a request head must arrive within `header_timeout` of its first
byte and a body within `body_timeout` plus its size at `body_min_rate`, else 408 and the connection
closes; connection admission and eviction are in connections.py.
"""

from __future__ import annotations

import io
import os
import socket
import socketserver
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edgeml.errors import EdgeMLError, NotFoundError

from ..metrics import ServerMetrics
from . import binary
from .connections import ClientGone, Conn, ConnectionTable, DeadlineExceeded, DeadlineIO
from .errors import RequestError
from .holder import ModelHolder
from .protocol import dumps, server_metadata
from .request import MAX_LINE, parse_request

JSON = "application/json"
_PHRASES = {s.value: s.phrase for s in HTTPStatus}
# Reason code of an EdgeMLError -> HTTP status; any other reason is the daemon's fault (500).
STATUS_BY_REASON = {
    "bad_request": 400, "bad_input": 400, "usage": 400,  # RequestError, DataError, UsageError
    "not_found": 404, "method_not_allowed": 405, "timeout": 408, "length_required": 411, "too_large": 413,
    "overloaded": 429, "inference_failed": 500, "unavailable": 503,
}
# The `reason` label of edgeml_request_errors_total, by status (stable for dashboards and alerts).
_METRIC_LABEL = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "timeout",
                 411: "length_required", 413: "too_large", 414: "too_large", 429: "overloaded",
                 431: "too_large", 500: "internal", 503: "unavailable", 505: "bad_request"}
_local = threading.local()  # the Conn of the connection a handler thread serves


@dataclass(frozen=True)
class ServerLimits:
    """What one client may hold or take; the defaults are `edgeml serve`'s (see its --help)."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_inflight: int = 64  # inference requests running or waiting at once; more are answered 429
    # Open client connections; beyond it the oldest idle or slow one is closed, and only when
    # every connection has a request being handled is the newcomer answered 503.
    max_connections: int = 256
    max_connections_per_client: int = 64  # from one client address (TCP), the same way; 0 = no limit
    idle_timeout: float = 60.0  # seconds a keep-alive connection may sit idle between requests
    header_timeout: float = 10.0  # seconds from a request's first byte to the end of its head (408 beyond)
    body_timeout: float = 10.0  # seconds for a body, plus its size at body_min_rate (408 beyond)
    body_min_rate: int = 64 * 1024  # bytes per second a body upload is granted on top of body_timeout

    def body_deadline(self, length: int) -> float:
        return self.body_timeout + length / self.body_min_rate


class ServerState:
    """What the handler threads share: the holder, metrics, limits and the in-flight count."""

    def __init__(self, holder: ModelHolder, metrics: ServerMetrics, limits: ServerLimits) -> None:
        self.holder = holder
        self.metrics = metrics
        self.limits = limits
        self.slots = threading.BoundedSemaphore(limits.max_inflight)
        self.connections = ConnectionTable(limits.max_connections, limits.max_connections_per_client, metrics)
        self.server_metadata = dumps(server_metadata())
        self._active = 0
        self._active_lock = threading.Condition()
        self.draining = False
        self.observer = None  # optional: .observe(model, feeds, outputs, seconds) and .error(model)

    def enter(self) -> None:
        with self._active_lock:
            self._active += 1

    def leave(self) -> None:
        with self._active_lock:
            self._active -= 1
            if self._active == 0:
                self._active_lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; False when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._active_lock:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._active_lock.wait(left)
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgeml"
    state: ServerState  # set on the subclass made for each server

    def setup(self) -> None:
        super().setup()
        limits = self.state.limits
        self.connection.settimeout(limits.idle_timeout)
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.close()  # replaced by a reader that keeps the header and body deadlines
        self._raw = DeadlineIO(self.connection, limits.idle_timeout)
        self.rfile = io.BufferedReader(self._raw)
        self._conn: Conn | None = getattr(_local, "conn", None)
        self._extra_header = ""

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # the client went away (or was evicted): nobody to answer
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    def handle_one_request(self) -> None:
        """One request: wait (idle timeout) for its first byte, then read its head by the header deadline."""
        raw, conn, limits = self._raw, self._conn, self.state.limits
        raw.set_deadline(None)
        if conn is not None:
            conn.idle()
        try:
            if not self.rfile.peek(1):  # the client closed, or the connection was evicted
                self.close_connection = True
                return
        except TimeoutError:  # idle for idle_timeout: close quietly, as any keep-alive server does
            self.close_connection = True
            return
        raw.set_deadline(time.monotonic() + limits.header_timeout)
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
            if len(self.raw_requestline) > MAX_LINE:
                self.send_error(414, "Request line too long")
                return
            if not self.raw_requestline.endswith(b"\n"):  # closed (or evicted) before the line ended
                self.close_connection = True
                return
            if not self.parse_request():
                return
        except DeadlineExceeded:
            self._timed_out("header", f"the request head did not arrive within {limits.header_timeout:g} s "
                                      "of its first byte (--header-timeout)")
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(405, f"method {self.command[:20]!r} is not supported")
            return
        method()
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found while reading the head: a JSON body like every other error, then close."""
        self.close_connection = True
        phrase = _PHRASES.get(code, "Error")
        m = self.state.metrics
        m.requests.inc(endpoint="unknown", code=str(code))
        m.errors.inc(endpoint="unknown", reason=_METRIC_LABEL.get(code, str(code)))
        self._reply(code, dumps({"error": message or phrase}), JSON)

    def _timed_out(self, phase: str, message: str) -> None:
        self.state.metrics.timeouts.inc(phase=phase)
        self.send_error(408, message)

    def parse_request(self) -> bool:
        return parse_request(self)  # the lean parser: the standard one costs more than an MLP inference

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # no access log on a device; /metrics counts requests

    def address_string(self) -> str:
        return str(self.client_address[0]) if isinstance(self.client_address, tuple) else "unix"

    # -- dispatch ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        state = self.state
        state.enter()
        start = time.perf_counter()
        self._endpoint = "unknown"
        if self._conn is not None and self.headers.get("Content-Length", "0") == "0":
            self._conn.busy()  # no body to wait for: the request is complete (else _read_exact marks it)
        try:
            try:
                status, body, ctype, error = self._route(method)
            except ClientGone:
                self.close_connection = True
                return
            except EdgeMLError as exc:
                status, body, ctype, error = STATUS_BY_REASON.get(exc.reason, 500), dumps({"error": exc.message}), JSON, True
            except Exception as exc:  # a fault of the daemon, not of the client
                print(f"edgeml serve: internal error on {method} {self.path}:\n{traceback.format_exc()}", file=sys.stderr)
                status, body, ctype, error = 500, dumps({"error": f"internal error: {type(exc).__name__}: {exc}"}), JSON, True
            # Counted before the reply is written, so a client that got its answer sees it in /metrics.
            m, endpoint = state.metrics, self._endpoint
            m.requests.inc(endpoint=endpoint, code=str(status))
            if error:
                m.errors.inc(endpoint=endpoint, reason=_METRIC_LABEL.get(status, str(status)))
            m.duration.observe(time.perf_counter() - start, endpoint=endpoint)
            self._reply(status, body, ctype, head=method == "HEAD")
        finally:
            state.leave()

    def _route(self, method: str) -> tuple[int, bytes, str, bool]:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        parts = path.strip("/").split("/")
        if parts[:2] == ["v2", "models"] and len(parts) >= 3:
            return self._model_route(method, parts[2:])
        endpoint, get = {
            "/v2/health/live": ("live", self._live),
            "/v2/health/ready": ("ready", self._ready),
            "/v2": ("server_metadata", self._server_metadata),
            "/metrics": ("metrics", self._metrics),
        }.get(path, ("unknown", None))
        if get is None:
            self._discard_body()
            raise NotFoundError(f"no endpoint {path}; see /v2 (Open Inference Protocol) and /metrics")
        self._endpoint = endpoint
        self._only(method, "GET", endpoint)
        return get()

    def _model_route(self, method: str, rest: list[str]) -> tuple[int, bytes, str, bool]:
        name, rest = rest[0], rest[1:]
        version = None
        if rest[:1] == ["versions"]:
            if len(rest) < 2:
                raise NotFoundError("a model version is missing after /versions/")
            version, rest = rest[1], rest[2:]
        action = rest[0] if rest else ""
        endpoint = {"": "model_metadata", "ready": "model_ready", "infer": "infer"}.get(action) if len(rest) <= 1 else None
        if endpoint is None:
            self._discard_body()
            raise NotFoundError(f"no endpoint {self.path}; use /v2/models/{name}[/versions/V][/ready|/infer]")
        self._endpoint = endpoint
        self._only(method, "POST" if endpoint == "infer" else "GET", endpoint)
        served = self.state.holder.current  # read once: a concurrent swap does not affect this request
        if endpoint == "infer":
            body = self._read_body()  # read before answering, so the connection stays usable
        if served is None or served.model.info.name != name:
            have = f"this server serves {served.model.info.name!r}" if served else "no model is loaded yet"
            raise NotFoundError(f"model {name!r} not found; {have}")
        if version is not None and version != served.model.info.version:
            raise NotFoundError(f"model {name!r} has no version {version!r}; serving version {served.model.info.version!r}")
        if endpoint == "model_metadata":
            return 200, served.metadata, JSON, False
        if endpoint == "model_ready":
            return 200, served.ready_body, JSON, False
        return self._infer(served, body)

    def _infer(self, served, body: bytes) -> tuple[int, bytes, str, bool]:
        state = self.state
        if not state.slots.acquire(blocking=False):
            raise RequestError(f"server busy: {state.limits.max_inflight} inference requests in flight; retry later",
                               "overloaded")
        try:
            request = served.codec.decode(body, self.headers.get(binary.HEADER))
            outputs = self._outputs(served, request.feeds)
            payload, header_length = served.codec.encode(outputs, request)
        finally:
            state.slots.release()
        if header_length is None:
            return 200, payload, JSON, False
        self._extra_header = f"{binary.HEADER}: {header_length}\r\n"
        return 200, payload, binary.CONTENT_TYPE, False

    def _outputs(self, served, feeds):
        """The model's outputs for decoded feeds: from the prediction cache, or by running the model."""
        state, cache = self.state, self.state.holder.cache
        key = cache.key(served.identity, feeds) if cache is not None else None
        if key is not None:
            hit = cache.get(key)
            if hit is not None:
                return hit  # not observed: telemetry and the inference histogram describe model runs
        t0 = time.perf_counter()
        try:
            outputs = served.run(feeds)
        except EdgeMLError:  # its reason decides: bad input 400, a backend failure 500
            if state.observer is not None:
                state.observer.error(served.model)
            raise
        seconds = time.perf_counter() - t0
        state.metrics.inference.observe(seconds)
        if state.observer is not None:  # the fleet agent's telemetry (edgeml serve --fleet)
            state.observer.observe(served.model, feeds, outputs, seconds)
        if key is not None:
            cache.put(key, outputs)
        return outputs

    # -- simple endpoints -------------------------------------------------------------------------

    def _live(self) -> tuple[int, bytes, str, bool]:
        return 200, b'{"live":true}', JSON, False

    def _ready(self) -> tuple[int, bytes, str, bool]:
        # The protocol: 200 means ready, a 4xx status means not ready.
        if self.state.holder.current is None or self.state.draining:
            return 400, b'{"ready":false}', JSON, False
        return 200, b'{"ready":true}', JSON, False

    def _server_metadata(self) -> tuple[int, bytes, str, bool]:
        return 200, self.state.server_metadata, JSON, False

    def _metrics(self) -> tuple[int, bytes, str, bool]:
        return 200, self.state.metrics.render(), ServerMetrics.CONTENT_TYPE, False

    # -- bodies -----------------------------------------------------------------------------------

    def _only(self, method: str, allowed: str, endpoint: str) -> None:
        if method != allowed and not (method == "HEAD" and allowed == "GET"):
            self._discard_body()
            raise RequestError(f"{endpoint} takes {allowed}, not {method}", "method_not_allowed")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise RequestError("send the request body with a Content-Length (chunked bodies are not accepted)",
                               "length_required")
        length = self._content_length()
        limit = self.state.limits.max_body_bytes
        if length > limit:
            self.close_connection = True  # the body stays unread
            raise RequestError(f"request body of {length} bytes exceeds the limit of {limit} bytes (--max-body-mb)",
                               "too_large")
        return self._read_exact(length)

    def _discard_body(self) -> None:
        length = self._content_length() if "Content-Length" in self.headers else 0
        if 0 < length <= self.state.limits.max_body_bytes:
            self._read_exact(length)
        elif length:
            self.close_connection = True

    def _read_exact(self, length: int) -> bytes:
        """The body, read by its deadline (408 after it); ClientGone when the client hangs up first."""
        limits = self.state.limits
        if length:
            self._raw.set_deadline(time.monotonic() + limits.body_deadline(length))
            try:
                data = self.rfile.read(length)
            except DeadlineExceeded:
                self.close_connection = True
                self.state.metrics.timeouts.inc(phase="body")
                raise RequestError(f"the request body of {length} bytes did not arrive within "
                                   f"{limits.body_deadline(length):.3g} s (--body-timeout)", "timeout") from None
            except OSError:
                raise ClientGone() from None
            if len(data) < length:
                raise ClientGone()
        else:
            data = b""
        if self._conn is not None:
            self._conn.busy()
        return data

    def _content_length(self) -> int:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            raise RequestError("Content-Length is not a number") from None
        if length < 0:
            self.close_connection = True
            raise RequestError("Content-Length is negative")
        return length

    def _reply(self, status: int, body: bytes, ctype: str, head: bool = False) -> None:
        phrase = _PHRASES.get(status) or HTTPStatus(status).phrase
        connection = "close" if self.close_connection or self.state.draining else "keep-alive"
        if connection == "close":
            self.close_connection = True
        extra, self._extra_header = self._extra_header, ""
        header = (f"HTTP/1.1 {status} {phrase}\r\nServer: edgeml\r\nContent-Type: {ctype}\r\n{extra}"
                  f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n").encode()
        self.wfile.write(header if head else header + body)


class _Limited:
    """Mixin: admit connections through the state's ConnectionTable (evicting idle or slow ones when
    full), one thread per admitted connection; refuse with a 503 only when every one is busy."""

    state: ServerState

    def process_request(self, request, client_address) -> None:
        conn = self.state.connections.admit(request, client_address)
        if conn is None:
            _refuse(request, self.state)
            self.shutdown_request(request)
            return
        threading.Thread(target=self._serve, args=(request, client_address, conn), daemon=True,
                         name="edgeml-conn").start()

    def _serve(self, request, client_address, conn: Conn) -> None:
        _local.conn = conn
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            _local.conn = None
            self.state.connections.release(conn)
            self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that vanished mid-reply is not the daemon's fault
        super().handle_error(request, client_address)  # type: ignore[misc]


def _refuse(sock: socket.socket, state: ServerState) -> None:
    status = STATUS_BY_REASON["unavailable"]
    body = dumps({"error": f"too many connections: all {state.limits.max_connections} have a request being "
                           "handled; retry later"})
    try:
        sock.sendall(f"HTTP/1.1 {status} {_PHRASES[status]}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    except OSError:
        pass
    state.metrics.requests.inc(endpoint="unknown", code=str(status))
    state.metrics.errors.inc(endpoint="unknown", reason=_METRIC_LABEL[status])


class TCPServer(_Limited, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        handler = type("BoundHandler", (Handler,), {"state": state})
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


class UnixServer(_Limited, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, path: str, state: ServerState) -> None:
        self.state = state
        _remove_stale_socket(path)
        handler = type("BoundHandler", (Handler,), {"state": state})
        super().__init__(path, handler)

    @property
    def url(self) -> str:
        return f"unix:{self.server_address}"

    def server_close(self) -> None:
        super().server_close()
        try:
            os.unlink(self.server_address)
        except OSError:
            pass


def _remove_stale_socket(path: str) -> None:
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise EdgeMLError(f"--unix-socket {path} exists and is not a socket; choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left over from a crash
        return
    finally:
        probe.close()
    raise EdgeMLError(f"--unix-socket {path} is in use by another server")
