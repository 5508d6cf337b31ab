"""A small HTTP client for the fleet API (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from edgeml.errors import EdgeMLError, UsageError


class FleetClient:
    def __init__(self, server: str, token: str | None, timeout: float = 60.0) -> None:
        if not server:
            raise UsageError("no fleet server: pass --server URL or set EDGEML_FLEET_SERVER")
        self.server, self.token, self.timeout = server.rstrip("/"), token, timeout

    def request(self, method: str, path: str, body: bytes | dict | None = None, content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(f"{self.server}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            raise EdgeMLError(f"fleet API {exc.code}: {_error_text(exc.read())}") from None
        except urllib.error.URLError as exc:
            raise EdgeMLError(f"cannot reach the fleet at {self.server}: {exc.reason}") from None
        return json.loads(payload) if payload else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: bytes | dict | None = None, content_type: str = "application/json") -> Any:
        return self.request("POST", path, body, content_type)


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:300]
