"""The fleet service: registry, artifact store, device registry, MQTT ingest and the HTTP API, wired together."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from edgeml import signing
from edgeml.errors import EdgeMLError
from edgeml.messages import Reported, Status, Telemetry
from edgeml.mqtt import BrokerAddress, redact_url
from edgeml.protocol import ProtocolError, Topics

from . import db
from .broker import EmbeddedBroker
from .broker_login import start_embedded
from .bus import FleetBus
from .devices import DeviceRegistry
from .provision import FLEET_USERNAME
from .freshness import DEFAULT_VALIDITY_S, FreshnessKeeper
from .registry import Registry
from .retrain_policy import RetrainPolicies
from .rollouts.engine import RolloutEngine
from .rollouts.repository import RolloutRepository
from .store import BlobStore
from .telemetry import (SKIPPED, IngestCounters, TelemetryIngest, TelemetryReader, aggregate, drift_for, merge_snapshots,
                        rows_since)
from .telemetry_acks import TelemetryAcks
from .device_counters import counter_totals

log = logging.getLogger("edgeml.fleet")


@dataclass
class FleetConfig:
    data_dir: Path
    db_url: str | None = None
    broker_url: str | None = None  # None: start the embedded broker
    mqtt_port: int = 1883
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_url: str | None = None  # how devices reach the HTTP API; default http://HOST:PORT
    token: str | None = None
    sign_key: Path | None = None  # signs desired documents; default DATA/fleet.key (created on first run)
    verify_key: Path | None = None  # pushed bundles must be signed by this key
    prefix: str = "edgeml"
    window_s: float = 300.0
    ingest_workers: int = 1  # >1: telemetry ingest in that many extra processes (shared subscriptions)
    insecure_broker: bool = False  # embedded broker without authentication or ACL (never in production)
    extra: dict[str, Any] = field(default_factory=dict)


class FleetService:
    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_url = config.db_url or db.default_url(config.data_dir)
        # One fleet = one database: its MQTT sessions are named after it, so they persist across restarts.
        self.session_name = hashlib.sha256(self.db_url.encode()).hexdigest()[:12]
        self.engine = db.connect(self.db_url)
        self.workers = None
        self.store = BlobStore(config.data_dir)
        self.topics = Topics(config.prefix)
        verify = signing.load_public_key(config.verify_key) if config.verify_key else None
        self.registry = Registry(self.engine, self.store, verify)
        self.sign_key_path, self.public_key_path = _fleet_key(config)
        self.devices = DeviceRegistry(self.engine, self.topics, signing.load_private_key(self.sign_key_path),
                                      config.public_url or f"http://{config.http_host}:{config.http_port}")
        self.devices.validity_s = float(config.extra.get("desired_validity_s") or DEFAULT_VALIDITY_S)
        self.freshness = FreshnessKeeper(self.engine, self.topics, self.devices.sign_key, self.publish, self.devices.validity_s)
        self.counters = IngestCounters()
        self.acks = TelemetryAcks(self.publish, self.topics)  # "stored up to seq N", retained per device
        self.ingest = TelemetryIngest(self.engine, on_dropped=self.counters.drop, acks=self.acks)
        self.broker: EmbeddedBroker | None = None
        self.bus: FleetBus | None = None
        self._known: set[str] = set()
        self.rollouts = RolloutEngine(RolloutRepository(self.engine), self.devices, self.publish,
                                      TelemetryReader(self.engine), self.registry)
        # retrain policies: the drift check polls version_stats (fleet/retrain_policy.py)
        self.retrain = RetrainPolicies(self.engine, config.data_dir, self.devices.public_url, config.token,
                                       self.version_stats, float(config.extra.get("retrain_check_s") or 30.0))

    # -- lifecycle -------------------------------------------------------------------------------
    def start_mqtt(self) -> None:
        url = self.config.broker_url
        # broker_url is what devices and users see (never a password); url is how this fleet logs in.
        self.broker_url = url and redact_url(url)
        self.fleet_mqtt_username = (BrokerAddress.parse(url).username if url else None) or FLEET_USERNAME
        # True when the embedded broker admits exactly the devices this fleet provisions
        self.embedded_auth = url is None and not self.config.insecure_broker
        if url is None:
            self.broker, url = start_embedded(self)
            self.broker_url = self.broker.url
        handlers = {"status": self.on_status, "reported": self.on_reported}
        if self.config.ingest_workers <= 1:
            handlers.update(telemetry=self.on_telemetry, events=self.on_event)
        self.bus = FleetBus(url, self.topics, handlers, self.counters, session=self.session_name)
        self.bus.start()
        if self.config.ingest_workers > 1:
            from .ingest_workers import IngestWorkers, require_shared_subscriptions

            require_shared_subscriptions(self.config.ingest_workers, self.bus.v5)
            self.workers = IngestWorkers(self.config.ingest_workers, self.db_url, url, self.config.prefix,
                                         self.session_name).start()
        self.rollouts.start()
        self.freshness.start()
        self.retrain.start()

    def stop(self) -> None:
        self.retrain.stop()
        self.freshness.stop()
        self.rollouts.stop()
        if self.workers is not None:
            self.workers.stop()
        if self.bus:
            self.bus.stop()
        self.ingest.close()
        if self.broker:
            self.broker.stop()

    # -- MQTT handlers (run on the MQTT network thread; must be quick) ----------------------------
    # Each handler parses its payload into the typed contract first (ProtocolError: the bus counts the
    # drop by reason); nothing past the parse sees the raw JSON.
    def on_status(self, device_id: str, payload: bytes) -> None:
        self.devices.on_status(device_id, Status.parse(payload))
        self._known.add(device_id)

    def on_reported(self, device_id: str, payload: bytes) -> None:
        doc = Reported.parse(payload)
        outcome = self.devices.on_reported(device_id, doc)
        reissue = outcome.reissue
        if outcome.refused_seq is not None:
            self.counters.drop("seq_not_issued", device_id)  # the state is stored, its seq is not adopted
        self._known.add(device_id)
        if reissue is not None and self.bus is not None:
            log.info("device %s applied sequence %s that this fleet did not issue; reissuing %s %s",
                     device_id, doc.seq, *reissue)
            self.devices.assign([device_id], reissue[0], reissue[1], self.publish)

    def on_telemetry(self, device_id: str, payload: bytes) -> None:
        msg = Telemetry.parse(payload)
        if device_id not in self._known and self.devices.get(device_id) is None:
            raise ProtocolError("unknown_device", device_id)
        self._known.add(device_id)
        self.ingest.submit(device_id, msg)

    def on_event(self, device_id: str, payload: bytes) -> None:
        from .ingest_workers import store_event

        store_event(self.engine, device_id, payload)

    def ingest_stats(self) -> dict[str, Any]:
        """Messages received and dropped (by reason, and by reason per device), telemetry rows stored and
        ignored as duplicates, acks published, and stored rows the read paths skipped as unreadable."""
        snapshot = self.counters.snapshot()
        stored, duplicates, acks = self.ingest.stored, self.ingest.duplicates, self.acks.published
        if self.workers is not None:
            theirs, worker_stored, worker_duplicates, worker_acks = self.workers.stats()
            snapshot = merge_snapshots([snapshot, theirs])
            stored, duplicates, acks = stored + worker_stored, duplicates + worker_duplicates, acks + worker_acks
        return {**snapshot, "telemetry_stored": stored, "telemetry_duplicates": duplicates, "telemetry_acks": acks,
                "read_skipped": dict(SKIPPED), "ingest_workers": max(1, self.config.ingest_workers),
                "ingest_workers_ready": self.workers.ready if self.workers is not None else 1}

    # -- queries used by the API ------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if self.bus is None:
            raise EdgeMLError("the fleet's MQTT side is not started (FleetService.start_mqtt)")
        self.bus.publish(topic, payload, retain)
        if retain:
            self.freshness.record(topic, payload)  # desired documents are re-signed before they expire

    def device_detail(self, device_id: str) -> dict[str, Any] | None:
        device = self.devices.get(device_id)
        if device is None:
            return None
        rows = rows_since(self.engine, time.time() - self.config.window_s, device_id)
        current = [r for r in rows if r["version"] == device["version"]]
        manifest = self._manifest(device["model"], device["version"])
        device["telemetry"] = {**aggregate(rows), **counter_totals(rows)}  # + cache and capture counters
        device["drift"] = drift_for(current, manifest)
        device["events"] = self.events(device_id, limit=50)
        return device

    def devices_with_stats(self, **filters: Any) -> list[dict[str, Any]]:
        rows = rows_since(self.engine, time.time() - self.config.window_s)
        by_device: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_device.setdefault(r["device_id"], []).append(r)
        out = []
        for d in self.devices.list(**filters):
            mine = by_device.get(d["id"], [])
            d["telemetry"] = aggregate(mine)
            drift = drift_for([r for r in mine if r["version"] == d["version"]], self._manifest(d["model"], d["version"]))
            d["drift"] = drift and {"max_psi": drift["max_psi"], "level": drift["level"], "features": drift["features"],
                                    "prediction": drift.get("prediction")}
            out.append(d)
        return out

    def version_stats(self) -> list[dict[str, Any]]:
        rows = rows_since(self.engine, time.time() - self.config.window_s)
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault((r["model"], r["version"]), []).append(r)
        return [{"model": m, "version": v, **aggregate(g), "drift": drift_for(g, self._manifest(m, v))}
                for (m, v), g in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))]

    def events(self, device_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = select(*db.lenient_columns(db.events)).order_by(db.events.c.id.desc()).limit(limit)
        if device_id:
            q = q.where(db.events.c.device_id == device_id)
        with self.engine.connect() as conn:  # stored as received by an older version, or by hand: decoded leniently
            return [{**r, "payload": db.load_json(r["payload"])} for r in (dict(m) for m in conn.execute(q).mappings())]

    def _manifest(self, model: str | None, version: str | None) -> dict[str, Any] | None:
        if not model or not version:
            return None
        found = self.registry.get(model, version)
        return found and found["manifest"]


def _fleet_key(config: FleetConfig) -> tuple[Path, Path]:
    if config.sign_key:
        return config.sign_key, config.sign_key.with_suffix(".pub")
    private, public = config.data_dir / signing.PRIVATE_NAME, config.data_dir / signing.PUBLIC_NAME
    if not private.exists():
        signing.generate_keypair(config.data_dir)
    return private, public


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=str)
