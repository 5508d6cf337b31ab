"""Telemetry ingest (parsed, batched inserts) and aggregates per device and per version.

A device's telemetry message (edgeml/devices/ID/telemetry) is the typed contract
`edgeml.messages.Telemetry`, all counts since its previous message:
    {"seq", "ts", "interval_s", "model", "version", "requests", "errors",
     "latency": {"buckets": [upper bounds, s], "counts": [per bucket, last = +Inf]},
     "cpu_percent", "rss_bytes", "features": {name: [counts on the bundle's bins]}, "prediction": [counts],
     "dropped": outbox messages dropped while offline, "shadow": the shadow candidate's comparison}
It is parsed once, at ingest (`Telemetry.parse`); what is stored is its canonical JSON.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from edgeml.histograms import HistogramSum, histogram_quantile
from edgeml.messages import Telemetry

from . import db
from .drift import drift_report

BATCH = 1000
FLUSH_S = 0.2


class TelemetryIngest:
    """Parsed messages go to a deque; one writer thread stores them in batches every FLUSH_S.

    No lock or condition variable per message (deque.append is atomic): the MQTT network thread
    only parses and appends. The stored payload is the message's canonical JSON (`Telemetry.to_json`:
    the contract's fields only, never a device's extra fields). A batch the database refuses is
    retried row by row: a row refused while others are stored is dropped and counted
    (`on_dropped("store_error")`); when every row fails the database is away, and all are kept.
    """

    def __init__(self, engine: Engine, on_stored: Callable[[int], None] | None = None,
                 on_dropped: Callable[[str], None] | None = None) -> None:
        self.engine = engine
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_sql = (f"INSERT INTO {db.telemetry.name} (device_id, model, version, received_at, seq, payload) "
                            f"VALUES ({', '.join([mark] * 6)})")
        self.pending: deque[tuple] = deque()
        self.stored = 0
        self.on_stored, self.on_dropped = on_stored, on_dropped
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()

    def submit(self, device_id: str, msg: Telemetry) -> None:
        self.pending.append((device_id, msg.model, msg.version, time.time(), msg.seq, msg.to_json().decode()))

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
            except Exception:
                if not self._write_each(rows):  # keep the rows: a database hiccup must not lose telemetry
                    self.pending.extendleft(reversed(rows))
                    return

    def _write_each(self, rows: list[tuple]) -> bool:
        """Store rows one at a time; False (nothing stored) when every one fails."""
        failed = []
        for row in rows:
            try:
                self._write([row])
            except Exception:
                failed.append(row)
        if len(failed) == len(rows):
            return False
        for _ in failed:
            if self.on_dropped:
                self.on_dropped("store_error")
        return True

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
    return latency_quantiles(p.get("latency") for p in payloads)


def latency_quantiles(latencies: Iterable[dict[str, Any] | None], percentiles: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    """{"latency_pNN_s": value} of the merged latency histograms (none without observations)."""
    merged = HistogramSum()
    for lat in latencies:
        if lat:
            merged.add(lat["counts"], bounds=lat["buckets"])
    if merged.total == 0:
        return {}
    return {f"latency_p{q}_s": histogram_quantile(merged.bounds, merged.counts, q / 100) for q in percentiles}


def live_histograms(rows: list[dict[str, Any]]) -> tuple[dict[str, list[int]], list[int] | None]:
    """The rows' feature and prediction histograms, each summed on its bins (see edgeml.histograms.HistogramSum)."""
    features: dict[str, HistogramSum] = {}
    prediction = HistogramSum()
    for r in rows:
        p = r["payload"]
        for name, counts in (p.get("features") or {}).items():
            features.setdefault(name, HistogramSum()).add(counts)
        if p.get("prediction"):
            prediction.add(p["prediction"])
    return {k: v.tolist() for k, v in features.items()}, prediction.tolist()


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


class TelemetryReader:
    """Telemetry rows and device events from the fleet database (the rollout engine's TelemetryReader)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def rows_since(self, since: float, model: str | None = None) -> list[dict[str, Any]]:
        rows = rows_since(self.engine, since)
        return rows if model is None else [r for r in rows if r["model"] == model]

    def events_since(self, since: float, kinds: Sequence[str]) -> list[dict[str, Any]]:
        q = select(db.events).where(db.events.c.received_at >= since, db.events.c.event.in_(list(kinds)))
        with self.engine.connect() as conn:
            return [dict(e) for e in conn.execute(q).mappings()]
