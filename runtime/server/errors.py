"""The server's error for a request it cannot take as sent (kept apart so every codec module can raise it)."""

from __future__ import annotations

from edgeml.errors import EdgeMLError


class RequestError(EdgeMLError):
    """A request the server cannot take as sent; `reason` picks the HTTP status (see http.py)."""

    reason = "bad_request"
