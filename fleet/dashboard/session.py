"""How a request proves it may use the fleet: a bearer token (CLI, scripts) or a dashboard session.

The dashboard never holds the master token: a login exchanges it for a session id, and the cookie is
`ID.EXPIRY.HMAC-SHA256(server secret, ID.EXPIRY)` (HttpOnly, SameSite=Strict). The server keeps the live
ids, so logout revokes a cookie at once; a fleet restart (new secret) ends every session. On top of
SameSite, a state-changing request authenticated by the cookie alone must carry the dashboard's custom
header, which a cross-site form cannot send (CSRF).

Failed logins and wrong bearer tokens are throttled per client address: after MAX_FAILURES within
WINDOW_S, that client gets 429 with Retry-After, without its token being checked, until the window moves
on. Behind a reverse proxy every client shares the proxy's address: throttle there as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

from starlette.requests import Request

from edgeml.errors import EdgeMLError

COOKIE = "edgeml_session"
DASHBOARD_HEADER = "x-edgeml-dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 10_000  # the oldest are dropped beyond this (a logged-in client cannot grow memory forever)
MAX_FAILURES = 5
WINDOW_S = 60.0


class Unauthorized(EdgeMLError):
    """The request does not present the fleet's token (the API answers 401 with a Bearer challenge)."""

    reason = "unauthorized"


class Throttled(EdgeMLError):
    """Too many failed logins from one client (the API answers 429 with Retry-After)."""

    reason = "throttled"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, int(retry_after + 0.999))
        super().__init__(f"too many failed logins from this address; retry in {self.retry_after} s")


class Sessions:
    """Signed, expiring, revocable dashboard session ids."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, secret: bytes | None = None) -> None:
        self.ttl_s = ttl_s
        self._secret = secret or secrets.token_bytes(32)
        self._live: dict[str, float] = {}  # id -> expiry (insertion order = age)
        self._lock = threading.Lock()

    def issue(self, now: float | None = None) -> str:
        sid, expiry = secrets.token_urlsafe(18), int((time.time() if now is None else now) + self.ttl_s)
        with self._lock:
            self._live[sid] = expiry
            while len(self._live) > MAX_SESSIONS:
                self._live.pop(next(iter(self._live)))
        return f"{sid}.{expiry}.{self._sign(sid, expiry)}"

    def valid(self, cookie: str, now: float | None = None) -> bool:
        sid = self._verified_id(cookie, now)
        with self._lock:
            return sid is not None and sid in self._live

    def revoke(self, cookie: str) -> None:
        sid = self._verified_id(cookie, None)
        if sid is not None:
            with self._lock:
                self._live.pop(sid, None)

    def _verified_id(self, cookie: str, now: float | None) -> str | None:
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        sid, expiry, mac = parts[0], int(parts[1]), parts[2]
        if not hmac.compare_digest(mac.encode(), self._sign(sid, expiry).encode()):
            return None
        if expiry <= (time.time() if now is None else now):
            with self._lock:
                self._live.pop(sid, None)
            return None
        return sid

    def _sign(self, sid: str, expiry: int) -> str:
        return hmac.new(self._secret, f"{sid}.{expiry}".encode(), hashlib.sha256).hexdigest()


class LoginThrottle:
    """At most MAX_FAILURES failed attempts per client address within a sliding WINDOW_S."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str, now: float | None = None) -> None:
        """Throttled when this client may not try again yet."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(client, now)
            if len(recent) >= self.max_failures:
                raise Throttled(recent[0] + self.window_s - now)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spray from many addresses
                for key in [k for k, v in self._failures.items() if not v or v[-1] < now - self.window_s]:
                    del self._failures[key]

    def _recent(self, client: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(client, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        return recent


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None


def session_cookie(request: Request) -> str:
    """The session cookie when it may authorize this request (unsafe methods also need the dashboard header)."""
    cookie = request.cookies.get(COOKIE, "")
    if cookie and (request.method in SAFE_METHODS or request.headers.get(DASHBOARD_HEADER)):
        return cookie
    return ""


def token_matches(given: str, token: str | None) -> bool:
    """True when the fleet runs without a token or `given` is that token (constant-time comparison)."""
    return token is None or hmac.compare_digest(given.encode(), token.encode())


class Gate:
    """The one authorization check of the API and the dashboard."""

    def __init__(self, token: str | None, sessions: Sessions | None = None, throttle: LoginThrottle | None = None) -> None:
        self.token = token
        self.sessions = sessions or Sessions()
        self.throttle = throttle or LoginThrottle()

    def logged_in(self, request: Request) -> bool:
        """A valid dashboard session (pages redirect to the login page otherwise)."""
        cookie = session_cookie(request)
        return self.token is None or bool(cookie and self.sessions.valid(cookie))

    def require(self, request: Request) -> None:
        """Unauthorized unless the request carries the bearer token or a live session; Throttled after
        too many wrong tokens from its address."""
        if self.token is None or self.logged_in(request):
            return
        given = bearer(request)
        if given is None:
            raise Unauthorized("missing or wrong bearer token; pass --token or EDGEML_FLEET_TOKEN")
        self.check_token(request, given)

    def check_token(self, request: Request, given: str,
                    message: str = "missing or wrong bearer token; pass --token or EDGEML_FLEET_TOKEN") -> None:
        client = client_address(request)
        self.throttle.check(client)
        if not token_matches(given, self.token):
            self.throttle.failed(client)
            raise Unauthorized(message)
