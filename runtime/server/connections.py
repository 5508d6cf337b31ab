"""Connection admission and read deadlines: slow or idle clients cannot starve the others.

Every connection has a thread (the standard library's threading server). The table admits at most
`max_connections` of them, and at most `max_connections_per_client` from one client address. A
connection is *evictable* unless a request on it is being handled (its head and body are in, the
model may be running): idle keep-alive connections and connections still sending a head or body
are. When a new connection would exceed a limit, the oldest evictable connection (of that client
for the per-client limit, of anyone for the total) is shut down to make room; only when every
connection is busy is the newcomer refused (503). So 300 slowloris connections push out each
other, never the requests that arrive complete and get answered.

`DeadlineIO` is the socket reader under the handler's `rfile`: with a deadline set, each read
waits at most until it, so a client dribbling one byte a second cannot stretch a header or body
past its deadline (the socket timeout alone restarts at every byte).
"""

from __future__ import annotations

import socket
import threading
import time

from ..metrics import ServerMetrics


class DeadlineExceeded(TimeoutError):
    """A read ran past the deadline of its phase (header or body)."""


class ClientGone(Exception):
    """The client closed (or was evicted) before its request was complete: there is no one to answer."""


class DeadlineIO(socket.SocketIO):
    """`SocketIO` whose reads end at `deadline` (time.monotonic()); None: the idle timeout applies."""

    def __init__(self, sock: socket.socket, idle_timeout: float) -> None:
        super().__init__(sock, "rb")
        sock._io_refs += 1  # type: ignore[attr-defined]  # as socket.makefile does
        self.idle_timeout = idle_timeout
        self.deadline: float | None = None
        self._dirty = False  # the socket timeout was shortened for a deadline

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline
        if deadline is None and self._dirty:
            self._sock.settimeout(self.idle_timeout)
            self._dirty = False

    def readinto(self, b) -> int:  # type: ignore[override]
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("deadline passed")
            self._sock.settimeout(left)
            self._dirty = True
        try:
            return super().readinto(b)
        except TimeoutError:
            if self.deadline is not None:
                raise DeadlineExceeded("deadline passed") from None
            raise


class Conn:
    __slots__ = ("sock", "client", "evictable", "since", "evicted")

    def __init__(self, sock: socket.socket, client: str | None) -> None:
        self.sock, self.client = sock, client
        self.evictable, self.since, self.evicted = True, time.monotonic(), False

    def busy(self) -> None:
        self.evictable = False

    def idle(self) -> None:
        self.since, self.evictable = time.monotonic(), True


class ConnectionTable:
    def __init__(self, max_connections: int, per_client: int, metrics: ServerMetrics) -> None:
        self.max_connections = max_connections
        self.per_client = per_client  # 0 = no per-client limit
        self.metrics = metrics
        self._conns: set[Conn] = set()
        self._by_client: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, sock: socket.socket, address) -> Conn | None:
        """Register a new connection, evicting the oldest evictable one if a limit is reached;
        None when it must be refused (every connection in the way is busy)."""
        client = str(address[0]) if isinstance(address, tuple) and address else None
        with self._lock:
            if client is not None and self.per_client and self._by_client.get(client, 0) >= self.per_client:
                if not self._evict(lambda c: c.client == client, "client_limit"):
                    return None
            if len(self._conns) >= self.max_connections and not self._evict(lambda c: True, "server_full"):
                return None
            conn = Conn(sock, client)
            self._conns.add(conn)
            if client is not None:
                self._by_client[client] = self._by_client.get(client, 0) + 1
            self.metrics.connections.set(len(self._conns))
        return conn

    def release(self, conn: Conn) -> None:
        with self._lock:
            if conn in self._conns:
                self._remove(conn)
            self.metrics.connections.set(len(self._conns))

    def _evict(self, which, why: str) -> bool:
        candidates = [c for c in self._conns if c.evictable and which(c)]
        if not candidates:
            return False
        victim = min(candidates, key=lambda c: c.since)
        victim.evicted = True
        self._remove(victim)
        try:
            victim.sock.shutdown(socket.SHUT_RDWR)  # wakes its thread's read; the thread closes the socket
        except OSError:
            pass
        self.metrics.evictions.inc(why=why)
        return True

    def _remove(self, conn: Conn) -> None:
        self._conns.discard(conn)
        if conn.client is not None:
            left = self._by_client.get(conn.client, 1) - 1
            if left:
                self._by_client[conn.client] = left
            else:
                self._by_client.pop(conn.client, None)
