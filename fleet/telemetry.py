"""Telemetry ingest (validated, batched inserts) and aggregates per device and per version.

A device's telemetry message (edgeml/devices/ID/telemetry), all counts since its previous message:
    {"seq", "ts", "interval_s", "model", "version", "requests", "errors",
     "latency": {"buckets": [upper bounds, s], "counts": [per bucket, last = +Inf]},
     "cpu_percent", "rss_bytes", "features": {name: [counts on the bundle's bins]}, "prediction": [counts],
     "dropped": outbox messages dropped while offline}
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from edgeml.protocol import TELEMETRY_FIELDS, ProtocolError, require_fields

from . import db
from .drift import drift_report

BATCH = 1000
FLUSH_S = 0.2


def validate_telemetry(msg: dict[str, Any]) -> dict[str, Any]:
    require_fields(msg, TELEMETRY_FIELDS)
    if msg["requests"] < 0 or msg["errors"] < 0 or msg["errors"] > msg["requests"] or msg["interval_s"] <= 0:
        raise ProtocolError("bad_schema", "counts must be non-negative, errors <= requests, interval > 0")
    lat = msg.get("latency")
    if lat is not None and (not isinstance(lat, dict) or len(lat.get("counts", [])) != len(lat.get("buckets", [])) + 1):
        raise ProtocolError("bad_schema", "latency needs buckets and counts (one more count, for +Inf)")
    for key in ("features",):
        if key in msg and not isinstance(msg[key], dict):
            raise ProtocolError("bad_schema", f"{key} must be an object")
    return msg


class TelemetryIngest:
    """Validated messages go to a deque; one writer thread stores them in batches every FLUSH_S.

    No lock or condition variable per message (deque.append is atomic): the MQTT network thread
    only parses, validates and appends. The raw payload is stored as received.
    """

    def __init__(self, engine: Engine, on_stored: Callable[[int], None] | None = None) -> None:
        self.engine = engine
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_sql = (f"INSERT INTO {db.telemetry.name} (device_id, model, version, received_at, seq, payload) "
                            f"VALUES ({', '.join([mark] * 6)})")
        self.pending: deque[tuple] = deque()
        self.stored = 0
        self.on_stored = on_stored
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()

    def submit(self, device_id: str, msg: dict[str, Any], raw: bytes) -> None:
        self.pending.append((device_id, msg.get("model"), msg.get("version"), time.time(), msg["seq"], raw.decode()))

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while self.pending:
            rows = []
            while self.pending and len(rows) < BATCH:
                rows.append(self.pending.popleft())
            try:
                self._write(rows)
            except Exception:  # keep the rows: a database hiccup must not lose telemetry
                self.pending.extendleft(reversed(rows))
                return

    def _write(self, rows: list[tuple]) -> None:
        # The driver's executemany straight away: SQLAlchemy's per-row parameter processing would cost
        # more CPU (and GIL time, shared with the MQTT thread) than the insert itself.
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self._insert_sql, rows)
        self.stored += len(rows)
        if self.on_stored:
            self.on_stored(len(rows))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def rows_since(engine: Engine, since: float, device_id: str | None = None) -> list[dict[str, Any]]:
    q = select(db.telemetry.c.device_id, db.telemetry.c.model, db.telemetry.c.version, db.telemetry.c.payload,
               db.telemetry.c.received_at).where(db.telemetry.c.received_at >= since)
    if device_id:
        q = q.where(db.telemetry.c.device_id == device_id)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    for r in rows:
        r["payload"] = json.loads(r["payload"])
    return rows


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Request rate, error rate, latency percentiles (merged histograms), CPU and RSS over rows."""
    if not rows:
        return {"messages": 0, "requests": 0, "errors": 0, "request_rate": 0.0, "error_rate": 0.0}
    payloads = [r["payload"] for r in rows]
    requests = sum(p["requests"] for p in payloads)
    errors = sum(p["errors"] for p in payloads)
    devices = {r["device_id"] for r in rows}
    seconds = sum(p["interval_s"] for p in payloads) / max(1, len(devices))
    out: dict[str, Any] = {
        "messages": len(rows), "devices": len(devices), "requests": requests, "errors": errors,
        "request_rate": requests / seconds if seconds else 0.0, "error_rate": errors / requests if requests else 0.0,
    }
    out.update(_latency(payloads))
    cpu = [p["cpu_percent"] for p in payloads if isinstance(p.get("cpu_percent"), (int, float))]
    rss = [p["rss_bytes"] for p in payloads if isinstance(p.get("rss_bytes"), (int, float))]
    if cpu:
        out["cpu_percent"] = float(np.mean(cpu))
    if rss:
        out["rss_bytes"] = float(np.mean(rss))
    out["dropped"] = sum(int(p.get("dropped", 0) or 0) for p in payloads)
    return out


def _latency(payloads: list[dict[str, Any]]) -> dict[str, float]:
    merged: np.ndarray | None = None
    buckets: list[float] | None = None
    for p in payloads:
        lat = p.get("latency")
        if not lat:
            continue
        if buckets is None:
            buckets, merged = list(lat["buckets"]), np.zeros(len(lat["counts"]))
        if list(lat["buckets"]) == buckets:
            merged += np.asarray(lat["counts"], dtype=np.float64)
    if merged is None or merged.sum() == 0:
        return {}
    return {f"latency_p{q}_s": histogram_quantile(buckets, merged, q / 100) for q in (50, 95, 99)}


def histogram_quantile(buckets: list[float], counts: np.ndarray, q: float) -> float:
    """Prometheus-style quantile: linear interpolation inside the bucket holding the q-th observation."""
    cum = np.cumsum(counts)
    rank = q * cum[-1]
    i = int(np.searchsorted(cum, rank, side="left"))
    if i >= len(buckets):
        return float(buckets[-1])
    lower = 0.0 if i == 0 else buckets[i - 1]
    below = 0.0 if i == 0 else cum[i - 1]
    inside = counts[i]
    return float(lower + (buckets[i] - lower) * ((rank - below) / inside if inside else 0.0))


def live_histograms(rows: list[dict[str, Any]]) -> tuple[dict[str, list[int]], list[int] | None]:
    features: dict[str, np.ndarray] = {}
    prediction: np.ndarray | None = None
    for r in rows:
        p = r["payload"]
        for name, counts in (p.get("features") or {}).items():
            arr = np.asarray(counts, dtype=np.int64)
            features[name] = arr if name not in features or len(features[name]) != len(arr) else features[name] + arr
        if p.get("prediction"):
            arr = np.asarray(p["prediction"], dtype=np.int64)
            prediction = arr if prediction is None or len(prediction) != len(arr) else prediction + arr
    return {k: v.tolist() for k, v in features.items()}, None if prediction is None else prediction.tolist()


def drift_for(rows: list[dict[str, Any]], manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    if not rows or not manifest or not manifest.get("reference"):
        return None
    features, prediction = live_histograms(rows)
    return drift_report(manifest["reference"], features, prediction)


class IngestCounters:
    """Counts of accepted and dropped messages by reason (exposed on the API)."""

    def __init__(self) -> None:
        self.received = Counter()
        self.dropped = Counter()
        self._lock = threading.Lock()

    def accept(self, kind: str) -> None:
        with self._lock:
            self.received[kind] += 1

    def drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"received": dict(self.received), "dropped": dict(self.dropped)}
