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

import logging
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from edgeml.histograms import HistogramSum, histogram_quantile
from edgeml.messages import Event, Telemetry
from edgeml.protocol import ProtocolError

from . import db
from .drift import drift_report
from .telemetry_acks import TelemetryAcks

log = logging.getLogger("edgeml.fleet")

BATCH = 1000
FLUSH_S = 0.2
MAX_PENDING = 500_000  # parsed messages waiting for the database; beyond, the oldest are dropped ("backlog_full")
DB_ERROR = "db_error"  # reason of a row the (reachable) database refused
Dropped = Callable[..., None]  # (reason, device_id)


class TelemetryIngest:
    """Parsed messages go to a deque; one writer thread stores them in batches every FLUSH_S.

    No lock or condition variable per message (deque.append is atomic): the MQTT network thread
    only parses and appends. The stored payload is the message's canonical JSON (`Telemetry.to_json`:
    the contract's fields only, never a device's extra fields). Each (device_id, seq) is stored once
    (a unique index; a redelivered or resent message is ignored on insert, counted in `duplicates`).

    A batch the database refuses is retried row by row, so one bad row never blocks the others: a row
    refused while the database answers is dropped and counted (reason `db_error`, once, never retried).
    Only when the database does not answer at all are the rows kept and retried on the next flush.
    `close()` drains what is queued before it returns. After each commit, `acks` (TelemetryAcks)
    learns the highest seq stored per device and publishes the acknowledgements.
    """

    def __init__(self, engine: Engine, on_stored: Callable[[int], None] | None = None,
                 on_dropped: Dropped | None = None, acks: TelemetryAcks | None = None) -> None:
        self.engine = engine
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_sql = (f"INSERT INTO {db.telemetry.name} (device_id, model, version, received_at, seq, payload) "
                            f"VALUES ({', '.join([mark] * 6)}) ON CONFLICT (device_id, seq) DO NOTHING")
        self.pending: deque[tuple] = deque()
        self.stored = 0
        self.duplicates = 0
        self.failed_flushes = 0  # flushes that found the database away (rows kept)
        self.on_stored, self.on_dropped, self.acks = on_stored, on_dropped, acks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()

    def submit(self, device_id: str, msg: Telemetry) -> None:
        if len(self.pending) >= MAX_PENDING:
            dropped = self.pending.popleft()
            self._drop("backlog_full", dropped[0])
        self.pending.append((device_id, msg.model, msg.version, time.time(), msg.seq, msg.to_json().decode()))

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self._cycle()
        self._cycle(final=True)

    def _cycle(self, final: bool = False) -> None:
        try:
            self._drain()
        except Exception:  # never let the writer thread die: the next flush retries
            log.exception("telemetry writer failed")
        if self.acks is not None:
            self.acks.flush(force=final)
        if final and self.pending:
            log.warning("fleet stopping with the database away: %d telemetry messages not stored", len(self.pending))

    def _drain(self) -> None:
        while self.pending:
            rows = []
            while self.pending and len(rows) < BATCH:
                rows.append(self.pending.popleft())
            try:
                self._write(rows)
            except Exception:
                if not self._write_each(rows):  # the database is away: keep the rows, retry on the next flush
                    self.pending.extendleft(reversed(rows))
                    self.failed_flushes += 1
                    return

    def _write_each(self, rows: list[tuple]) -> bool:
        """Store rows one at a time; False (nothing stored, nothing dropped) when the database is away."""
        failed, stored_any = [], False
        for row in rows:
            try:
                self._write([row])
                stored_any = True
            except Exception as exc:
                failed.append((row, exc))
        if failed and not stored_any and not self._database_answers():
            return False
        for row, exc in failed:
            self._drop(DB_ERROR, row[0])
            log.debug("telemetry row of %s seq %s refused by the database: %s", row[0], row[4], exc)
        return True

    def _database_answers(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    def _write(self, rows: list[tuple]) -> None:
        # The driver's executemany straight away: SQLAlchemy's per-row parameter processing would cost
        # more CPU (and GIL time, shared with the MQTT thread) than the insert itself.
        with self.engine.begin() as conn:
            result = conn.exec_driver_sql(self._insert_sql, rows)
        inserted = result.rowcount if result.rowcount is not None and 0 <= result.rowcount <= len(rows) else len(rows)
        self.stored += inserted
        self.duplicates += len(rows) - inserted
        if self.on_stored:
            self.on_stored(inserted)
        if self.acks is not None:
            self.acks.stored((r[0], r[4]) for r in rows)

    def _drop(self, reason: str, device_id: str) -> None:
        if self.on_dropped:
            self.on_dropped(reason, device_id)

    def close(self) -> None:
        """Stop after storing what is queued (and sending its acknowledgements)."""
        self._stop.set()
        self._thread.join(timeout=30)


# -- reading stored rows -----------------------------------------------------------------------------
# What is stored may predate this version or be written by hand: every row is parsed with the
# contract again on read, and a row that does not parse is skipped (counted in `SKIPPED`), never
# passed on to an aggregate, a gate or the API.
SKIPPED = Counter()
# Stored rows never change: each is parsed once and kept (bounded, oldest out) for the reads that follow,
# so the rollout engine's gates and the API do not re-parse the window every second. Read-only dicts.
_PARSED: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_PARSED_MAX = 20_000
_PARSED_LOCK = threading.Lock()


def rows_since(engine: Engine, since: float, device_id: str | None = None) -> list[dict[str, Any]]:
    t = db.telemetry
    q = select(t.c.id, t.c.device_id, t.c.model, t.c.version, t.c.payload, t.c.received_at, t.c.seq) \
        .where(t.c.received_at >= since)
    if device_id:
        q = q.where(t.c.device_id == device_id)
    with engine.connect() as conn:
        found = conn.execute(q).all()
    rows = []
    for r in found:
        key = (id(engine), r.id, r.device_id, r.seq, r.received_at, r.model, r.version)
        with _PARSED_LOCK:
            row = _PARSED.get(key)
        if row is None:
            row = stored_row(r.device_id, r.model, r.version, r.payload, r.received_at)
            if row is None:
                SKIPPED["telemetry"] += 1
                continue
            with _PARSED_LOCK:
                _PARSED[key] = row
                if len(_PARSED) > _PARSED_MAX:
                    _PARSED.popitem(last=False)
        rows.append(row)
    return rows


def stored_row(device_id: Any, model: Any, version: Any, payload: Any, received_at: Any) -> dict[str, Any] | None:
    """A stored telemetry row checked again (None when any part of it is not what the contract allows)."""
    if not isinstance(device_id, str) or not _opt_str(model) or not _opt_str(version):
        return None
    if isinstance(received_at, bool) or not isinstance(received_at, (int, float)) or not math.isfinite(received_at):
        return None
    if isinstance(payload, str):
        payload = payload.encode()
    if not isinstance(payload, bytes):
        return None
    try:
        msg = Telemetry.parse(payload)
    except (ProtocolError, RecursionError):
        return None
    return {"device_id": device_id, "model": model, "version": version, "payload": msg.to_dict(),
            "received_at": float(received_at)}


def _opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


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
    try:
        return drift_report(manifest["reference"], features, prediction)
    except (TypeError, ValueError, KeyError, AttributeError):  # a reference this version cannot read: no drift number
        log.debug("drift skipped: the reference of %s %s is not readable", manifest.get("name"), manifest.get("version"))
        return None


class IngestCounters:
    """Counts of accepted and dropped messages, by reason and by device (exposed on GET /api/v1/stats).

    A drop is logged at most once per LOG_EVERY_S (with how many others were dropped meanwhile), so
    a device flooding the fleet with garbage cannot flood its log. At most MAX_DEVICES devices are
    counted one by one (topics can name any id); the drops of others count under OTHER_DEVICES.
    """

    LOG_EVERY_S = 10.0
    MAX_DEVICES = 10_000
    OTHER_DEVICES = "(other devices)"

    def __init__(self) -> None:
        self.received = Counter()
        self.dropped = Counter()
        self.by_device: dict[str, Counter] = {}
        self._lock = threading.Lock()
        self._logged_at = -math.inf
        self._unlogged = 0

    def accept(self, kind: str) -> None:
        with self._lock:
            self.received[kind] += 1

    def drop(self, reason: str, device_id: str | None = None, detail: str | None = None) -> None:
        device = device_id or "(no device)"
        with self._lock:
            self.dropped[reason] += 1
            if device not in self.by_device and len(self.by_device) >= self.MAX_DEVICES:
                device = self.OTHER_DEVICES
            self.by_device.setdefault(device, Counter())[reason] += 1
            now = time.monotonic()
            if now - self._logged_at < self.LOG_EVERY_S:
                self._unlogged += 1
                return
            self._logged_at, others, self._unlogged = now, self._unlogged, 0
        log.warning("dropped a message from %s: %s%s%s", device, reason, f" ({detail[:200]})" if detail else "",
                    f"; {others} more dropped since the last report" if others else "")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"received": dict(self.received), "dropped": dict(self.dropped),
                    "dropped_by_device": {d: dict(c) for d, c in self.by_device.items()}}


def merge_snapshots(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The sum of several IngestCounters snapshots (the main process and its ingest workers)."""
    received, dropped, by_device = Counter(), Counter(), {}
    for snap in snapshots:
        received.update(snap.get("received", {}))
        dropped.update(snap.get("dropped", {}))
        for d, c in snap.get("dropped_by_device", {}).items():
            by_device.setdefault(d, Counter()).update(c)
    return {"received": dict(received), "dropped": dict(dropped),
            "dropped_by_device": {d: dict(c) for d, c in by_device.items()}}


class TelemetryReader:
    """Telemetry rows and device events from the fleet database (the rollout engine's TelemetryReader)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def rows_since(self, since: float, model: str | None = None) -> list[dict[str, Any]]:
        rows = rows_since(self.engine, since)
        return rows if model is None else [r for r in rows if r["model"] == model]

    def events_since(self, since: float, kinds: Sequence[str]) -> list[dict[str, Any]]:
        return events_since(self.engine, since, kinds)


def events_since(engine: Engine, since: float, kinds: Sequence[str]) -> list[dict[str, Any]]:
    """Stored events of these kinds, each checked again with the Event contract (bad rows skipped)."""
    t = db.events
    q = select(*db.lenient_columns(t)).where(t.c.received_at >= since, t.c.event.in_(list(kinds)))
    with engine.connect() as conn:
        return [e for e in (stored_event(dict(r)) for r in conn.execute(q).mappings()) if e is not None]


def stored_event(row: dict[str, Any]) -> dict[str, Any] | None:
    """An events row with its payload decoded and parsed (`Event.to_dict()`); None when it does not parse."""
    try:
        msg = Event.parse(db.load_json(row["payload"]))
    except (ProtocolError, RecursionError):
        SKIPPED["events"] += 1
        return None
    at = row.get("received_at")
    if not isinstance(row.get("device_id"), str) or isinstance(at, bool) or not isinstance(at, (int, float)) \
            or not math.isfinite(at):
        SKIPPED["events"] += 1
        return None
    return {**row, "event": msg.event, "payload": msg.to_dict()}
