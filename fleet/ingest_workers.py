"""Telemetry ingest in extra processes: `edgeml fleet serve --ingest-workers N`.

Each worker is its own process with its own MQTT session, joined to the shared subscriptions
(`$share/edgeml-fleet-<fleet>/…/telemetry` and `…/events`), so the broker splits the stream between
them and parsing, validation and batched inserts run on every core. Workers use clean sessions:
Mosquitto 2.0 duplicates messages between members of a shared group whose sessions persist. The main process keeps reported state,
status, desired documents, rollouts and the API. Workers send their counters to the main process
once a second for `GET /api/v1/stats`.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from edgeml.errors import UsageError
from edgeml.messages import Event, Telemetry
from edgeml.protocol import ProtocolError, Topics

from . import db
from .telemetry import IngestCounters, TelemetryIngest, merge_snapshots
from .telemetry_acks import TelemetryAcks

REPORT_S = 1.0


class KnownDevices:
    """Device ids seen in the registry (looked up once, then cached)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ids: set[str] = set()

    def add(self, device_id: str) -> None:
        self._ids.add(device_id)

    def check(self, device_id: str) -> None:
        if device_id in self._ids:
            return
        with self.engine.connect() as conn:
            found = conn.execute(select(db.devices.c.id).where(db.devices.c.id == device_id)).first()
        if found is None:
            raise ProtocolError("unknown_device", device_id)
        self._ids.add(device_id)


def store_event(engine: Engine, device_id: str, payload: bytes) -> None:
    """Parse an event (ProtocolError when malformed) and store its contract fields."""
    msg = Event.parse(payload)
    with engine.begin() as conn:
        conn.execute(db.events.insert().values(device_id=device_id, received_at=time.time(), event=msg.event,
                                               payload=msg.to_dict()))


def telemetry_handler(known: KnownDevices, ingest: TelemetryIngest):
    def on_telemetry(device_id: str, payload: bytes) -> None:
        msg = Telemetry.parse(payload)
        known.check(device_id)
        ingest.submit(device_id, msg)

    return on_telemetry


def _worker(index: int, db_url: str, broker_url: str, prefix: str, session: str, reports: Any, stop: Any) -> None:
    from .bus import FleetBus

    engine = db.connect(db_url)
    counters, known, topics = IngestCounters(), KnownDevices(engine), Topics(prefix)
    holder: list[Any] = []  # the bus, once made: acks are published on this worker's own MQTT client

    def publish(topic: str, payload: bytes, retain: bool) -> None:
        holder[0].publish(topic, payload, retain)

    acks = TelemetryAcks(publish, topics)
    ingest = TelemetryIngest(engine, on_dropped=counters.drop, acks=acks)
    bus = FleetBus(broker_url, Topics(prefix), {"telemetry": telemetry_handler(known, ingest),
                                                "events": lambda d, p: store_event(engine, d, p)}, counters,
                   session=None, split=True, group=f"edgeml-fleet-{session}")
    holder.append(bus)
    bus.start()

    def report() -> None:
        reports.put((index, counters.snapshot(), ingest.stored, ingest.duplicates, acks.published))

    try:
        while not stop.wait(REPORT_S):
            report()
    finally:
        ingest.close()  # drains the queue and sends its acks while the client is still connected
        bus.stop()
        report()


class IngestWorkers:
    def __init__(self, count: int, db_url: str, broker_url: str, prefix: str, session: str) -> None:
        self.count, self.db_url, self.broker_url, self.prefix, self.session = count, db_url, broker_url, prefix, session
        ctx = mp.get_context("spawn")  # no inherited threads, sockets or database connections
        self._reports, self._stop = ctx.Queue(), ctx.Event()
        self._procs = [ctx.Process(target=_worker, args=(i, db_url, broker_url, prefix, session, self._reports, self._stop),
                                   name=f"edgeml-ingest-{i}", daemon=True) for i in range(count)]
        self._latest: dict[int, tuple[dict[str, Any], int, int, int]] = {}
        self._collector = threading.Thread(target=self._collect, name="ingest-worker-reports", daemon=True)

    def start(self) -> "IngestWorkers":
        for p in self._procs:
            p.start()
        self._collector.start()
        return self

    def _collect(self) -> None:
        while True:
            try:
                index, *latest = self._reports.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            self._latest[index] = tuple(latest)

    @property
    def ready(self) -> int:
        """Workers connected and subscribed (each reports once its MQTT session is up)."""
        return len(self._latest)

    def stats(self) -> tuple[dict[str, Any], int, int, int]:
        """The workers' merged counters snapshot, telemetry rows stored, duplicates ignored, acks sent."""
        latest = list(self._latest.values())
        return (merge_snapshots(s for s, *_ in latest), sum(x[1] for x in latest), sum(x[2] for x in latest),
                sum(x[3] for x in latest))

    def stop(self) -> None:
        self._stop.set()
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.terminate()


def require_shared_subscriptions(count: int, shared: bool) -> None:
    if count > 1 and not shared:
        raise UsageError("--ingest-workers above 1 needs a broker with shared subscriptions (Mosquitto, EMQX); "
                         "the embedded broker has none")
