"""Reading captured rows from the fleet API for `--from-fleet` (standard library HTTP: train imports core only,
never edgeml.fleet, whose extra a training machine may not have)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from edgeml.errors import EdgeMLError, UsageError

# the forms `edgeml fleet capture export --since` takes (fleet/capture.py parse_duration)
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
TIMEOUT_S = 60.0


def parse_since(text: str) -> float:
    match = DURATION_RE.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--since {text!r}: use a positive duration like 7d, 12h, 90m or 45s")
    return float(match.group(1)) * UNITS[match.group(2)]


def split_target(text: str) -> tuple[str, str | None]:
    """MODEL[@VERSION]."""
    model, at, version = text.partition("@")
    if not model or (at and not version):
        raise UsageError(f"--from-fleet {text!r}: use MODEL or MODEL@VERSION")
    return model, version or None


@dataclass
class FleetSource:
    url: str
    token: str | None
    model: str
    version: str | None = None
    since_s: float | None = None  # only rows captured within this many seconds

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url.rstrip("/") + path)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise EdgeMLError(f"fleet API {exc.code} for {path.split('?')[0]}: {_error_text(exc.read())}",
                              reason="not_found" if exc.code == 404 else "fleet_error") from None
        except (urllib.error.URLError, OSError) as exc:
            raise EdgeMLError(f"cannot reach the fleet at {self.url}: {getattr(exc, 'reason', exc)}",
                              reason="fleet_unreachable") from None
        except ValueError:
            raise EdgeMLError(f"the fleet at {self.url} answered {path.split('?')[0]} with something other than JSON",
                              reason="fleet_error") from None


def fetch_rows(source: FleetSource) -> list[dict[str, Any]]:
    """Every captured row of the model (one version, or all), paged through GET /api/v1/capture/rows."""
    query: dict[str, Any] = {"model": source.model, **({"version": source.version} if source.version else {})}
    if source.since_s is not None:
        query["since"] = str(time.time() - source.since_s)
    rows, after = [], 0
    while True:
        page = source.get(f"/api/v1/capture/rows?{urlencode({**query, 'after': after})}")
        rows += page["rows"]
        if page["next"] is None:
            return rows
        after = page["next"]


def bundle_run_id(source: FleetSource) -> str | None:
    """The train run id the fleet's MODEL@VERSION was converted from (None: no version given or not known)."""
    if source.version is None:
        return None
    try:
        found = source.get(f"/api/v1/models/{quote(source.model)}/{quote(source.version)}")
    except EdgeMLError as exc:
        if exc.reason == "not_found":
            return None
        raise
    return ((found or {}).get("manifest") or {}).get("metrics", {}).get("run_id")


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:300]
