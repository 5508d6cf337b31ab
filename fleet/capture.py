"""Captured requests on the fleet: policies for desired documents, upload auth, storage, retention, deletion.

Authentication of uploads (decision): each device gets a bearer token derived by the fleet,
HMAC-SHA256(key, device id) with a key derived from the fleet's signing key. The token travels in the
capture policy of the device's signed desired document, on the device's own retained `desired` topic
(with the embedded broker or `edgeml fleet provision` ACLs only that device can read it), so the fleet
stores no per-device secret and a token works only for the device id in the upload URL. Rotating the
fleet key rotates every token (devices get new ones with their next desired document).

Rows are stored per device/model/version with the device's request id, capture time and the inputs and
outputs the device sent (sensitive names were removed on the device). Rows older than the retention
period (by arrival time) are purged by a background loop; `delete_device` removes a device's rows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from edgeml.errors import EdgeMLError, UsageError
from edgeml.messages.capture import MAX_PER_HOUR, CaptureBatch, CapturePolicy
from edgeml.protocol import ProtocolError

from . import db
from .background import Background

log = logging.getLogger("edgeml.fleet.capture")

DEFAULT_RETENTION_S = 30 * 86400.0
DEFAULT_MAX_PER_HOUR = 1000  # `--capture RATE` without a cap
MAX_UPLOAD_BYTES = 8 << 20  # one uploaded batch
MAX_PAGE = 1000  # rows per read of GET /api/v1/capture/rows
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, option: str) -> float:
    """Seconds of `30d`, `12h`, `90m`, `45s` (or plain seconds); UsageError naming `option` otherwise."""
    match = DURATION_RE.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"{option} {text!r}: use a positive duration like 30d, 12h, 90m or 45s")
    return float(match.group(1)) * UNITS[match.group(2)]


@dataclass(frozen=True)
class CaptureRequest:
    """What an operator asks for (`--capture RATE[,MAX_PER_HOUR] --capture-exclude NAMES`)."""

    rate: float
    max_per_hour: int | None = DEFAULT_MAX_PER_HOUR
    sensitive: tuple[str, ...] = ()

    @classmethod
    def parse_cli(cls, capture: str, exclude: str = "") -> "CaptureRequest":
        parts = [p.strip() for p in capture.split(",")]
        try:
            rate = float(parts[0])
            cap = int(parts[1]) if len(parts) == 2 else DEFAULT_MAX_PER_HOUR
        except ValueError:
            raise UsageError(f"--capture {capture!r}: use RATE[,MAX_PER_HOUR], e.g. 0.1,500") from None
        if len(parts) > 2 or not 0 < rate <= 1 or not 1 <= cap <= MAX_PER_HOUR:
            raise UsageError(f"--capture {capture!r}: RATE must be in (0, 1] and MAX_PER_HOUR in [1, {MAX_PER_HOUR}]")
        return cls(rate, cap, tuple(n.strip() for n in exclude.split(",") if n.strip()))

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "max_per_hour": self.max_per_hour, "exclude": list(self.sensitive)}


class CaptureStore:
    def __init__(self, engine: Engine, sign_key: Ed25519PrivateKey, public_url: str,
                 retention_s: float = DEFAULT_RETENTION_S) -> None:
        raw = sign_key.private_bytes_raw()
        self._key = hashlib.sha256(b"edgeml-capture-token-v1" + raw).digest()
        self.engine, self.public_url, self.retention_s = engine, public_url.rstrip("/"), retention_s
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._background = Background("capture-retention", self._run, self._stop)

    # -- policies and auth -----------------------------------------------------------------------
    def token(self, device_id: str) -> str:
        digest = hmac.new(self._key, b"capture:" + device_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def authorized(self, device_id: str, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token(device_id).encode())

    def policy(self, device_id: str, request: CaptureRequest) -> CapturePolicy:
        """The policy of `device_id`'s desired document (checked against the contract)."""
        try:
            return CapturePolicy.parse({"rate": request.rate, "max_per_hour": request.max_per_hour,
                                        "sensitive": list(request.sensitive), "token": self.token(device_id),
                                        "url": f"{self.public_url}/api/v1/capture/{device_id}"})
        except ProtocolError as exc:
            raise UsageError(f"capture policy: {exc.detail}") from None

    # -- ingest ----------------------------------------------------------------------------------
    def count(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.counters[reason] += n

    def ingest(self, device_id: str, body: bytes) -> int:
        """Store one uploaded batch; returns the number of rows. A malformed batch is counted and refused."""
        try:
            batch = CaptureBatch.parse(body)
        except ProtocolError as exc:
            self.count(f"rejected_{exc.reason}")
            raise EdgeMLError(f"capture batch refused: {exc.detail}", reason="bad_input") from None
        now = time.time()
        values = [{"device_id": device_id, "model": batch.model, "version": batch.version, "request_id": r.request_id,
                   "ts": r.ts, "received_at": now, "inputs": _json({k: t.to_dict() for k, t in r.inputs.items()}),
                   "outputs": _json({k: t.to_dict() for k, t in r.outputs.items()})} for r in batch.rows]
        if values:
            with self.engine.begin() as conn:
                conn.execute(db.captured_rows.insert(), values)
        self.count("batches")
        self.count("rows", len(values))
        self.count("dropped_on_devices", batch.dropped)
        return len(values)

    # -- reads, deletion, retention --------------------------------------------------------------
    def rows(self, model: str, version: str | None = None, since: float | None = None, after: int = 0,
             limit: int = MAX_PAGE) -> list[dict[str, Any]]:
        t = db.captured_rows
        q = select(t).where(t.c.model == model, t.c.id > after).order_by(t.c.id).limit(max(1, min(limit, MAX_PAGE)))
        if version is not None:
            q = q.where(t.c.version == version)
        if since is not None:
            q = q.where(t.c.ts >= since)
        with self.engine.connect() as conn:
            found = conn.execute(q).mappings().all()
        return [{**dict(r), "inputs": db.load_json(r["inputs"]), "outputs": db.load_json(r["outputs"])} for r in found]

    def iter_rows(self, model: str, version: str | None = None, since: float | None = None) -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            page = self.rows(model, version, since, after)
            yield from page
            if len(page) < MAX_PAGE:
                return
            after = page[-1]["id"]

    def stats(self) -> dict[str, Any]:
        t = db.captured_rows
        with self.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(t)).scalar() or 0
        with self._lock:
            counters = dict(self.counters)
        return {"stored_rows": stored, "retention_s": self.retention_s, **counters}

    def delete_device(self, device_id: str) -> int:
        with self.engine.begin() as conn:
            n = conn.execute(delete(db.captured_rows).where(db.captured_rows.c.device_id == device_id)).rowcount
        log.info("deleted %d captured rows of device %s", n, device_id)
        return n

    def purge(self, now: float | None = None) -> int:
        """Delete rows that arrived longer than the retention period ago; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self.engine.begin() as conn:
            n = conn.execute(delete(db.captured_rows).where(db.captured_rows.c.received_at < cutoff)).rowcount
        if n:
            self.count("purged", n)
        return n

    def start(self) -> "CaptureStore":
        self._background.start()
        return self

    def stop(self) -> None:
        self._background.stop()

    def _run(self) -> None:
        tick = min(3600.0, max(0.5, self.retention_s / 4))
        while not self._stop.wait(tick):
            try:
                self.purge()
            except Exception:  # the database away: try again next tick
                log.exception("purging captured rows failed")


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def split_model(text: str) -> tuple[str, str | None]:
    """MODEL[@VERSION]."""
    model, _, version = text.partition("@")
    if not model or (_ and not version):
        raise UsageError(f"{text!r}: use MODEL or MODEL@VERSION")
    return model, version or None
