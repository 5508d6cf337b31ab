"""How a request presents the fleet token: a bearer header (CLI, scripts) or the dashboard's HttpOnly cookie.

The cookie is SameSite=Strict; on top of that, a state-changing request authenticated by the cookie alone
must carry the dashboard's custom header, which a cross-site form cannot send (CSRF).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from edgeml.errors import EdgeMLError

COOKIE = "edgeml_fleet_token"
DASHBOARD_HEADER = "x-edgeml-dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Unauthorized(EdgeMLError):
    """The request does not present the fleet's token (the API answers 401 with a Bearer challenge)."""

    reason = "unauthorized"


def presented_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:]
    cookie = request.cookies.get(COOKIE, "")
    if cookie and (request.method in SAFE_METHODS or request.headers.get(DASHBOARD_HEADER)):
        return cookie
    return ""


def token_matches(given: str, token: str | None) -> bool:
    """True when the fleet runs without a token or `given` is that token (constant-time comparison)."""
    return token is None or hmac.compare_digest(given.encode(), token.encode())
