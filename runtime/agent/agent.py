"""The device agent: MQTT session, desired-state handling, installs, reported state, telemetry.

Threads: paho's network loop (callbacks only enqueue), one installer thread (one install at a time,
the newest desired document wins), one telemetry thread (every interval).
"""

from __future__ import annotations

import logging
import platform
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeml.mqtt import BrokerAddress, make_client
from edgeml.messages import OFFLINE, ONLINE, Desired, Event, Reported, clip
from edgeml.protocol import ProtocolError, Topics

from ..backends import available_backends
from ..model import Model
from ..selection import Preference
from ..server.holder import ModelHolder
from .installer import InstallFailed, Installer, describe
from .outbox import Outbox
from .shadow import ShadowRunner
from .store import DeviceStore
from .telemetry import TelemetryRecorder

log = logging.getLogger("edgeml.agent")

INTERNAL_RETRIES = 5  # an unexpected crash during an install is retried this often (1, 2, 4, 8, 16 s apart)


@dataclass
class AgentConfig:
    broker_url: str
    device_id: str
    store: Path
    tags: dict[str, str] = field(default_factory=dict)
    bundle_key: Ed25519PublicKey | None = None  # pinned key of bundle signatures (None: --insecure)
    fleet_key: Ed25519PublicKey | None = None  # pinned key of desired documents (None: --insecure)
    telemetry_interval: float = 10.0
    prefix: str = "edgeml"
    preference: Preference = field(default_factory=Preference.resolve)
    threads: int | None = None
    outbox_limit: int = 1000
    shadow_sample: float = 0.25  # fraction of requests mirrored to a shadow candidate


class DeviceAgent:
    def __init__(self, config: AgentConfig, holder: ModelHolder) -> None:
        self.config, self.holder = config, holder
        self.topics = Topics(config.prefix)
        self.store = DeviceStore(config.store)
        self.installer = Installer(self.store, config.bundle_key, config.preference, config.threads)
        self.recorder = TelemetryRecorder()
        self.shadow = ShadowRunner(self.store.root / "shadow", lambda store: Installer(
            store, config.bundle_key, config.preference, config.threads), config.shadow_sample)
        self.recorder.mirror = self.shadow.offer
        self.outbox = Outbox(self.store.root / "outbox", config.outbox_limit)
        self.state = self.store.state()
        self.status = "idle"
        self.error: str | None = None
        self._desired: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stop = threading.Event()
        self._send_lock = threading.Lock()  # spool-or-send and draining are one step: order kept, nothing stranded
        self._connected = threading.Event()
        self._threads: list[threading.Thread] = []
        address = BrokerAddress.parse(config.broker_url)
        self.client = make_client(address, config.device_id, v5=False, clean=False)
        self.client.will_set(self.topics.device(config.device_id, "status"), OFFLINE.to_bytes(), qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_message = self._on_message
        self.address = address

    # -- lifecycle -------------------------------------------------------------------------------
    def resume(self) -> Model | None:
        """Serve the active model from the store (after a restart, even after a kill mid-install)."""
        active = self.store.active_dir()
        if active is None:
            return None
        try:
            model = self.installer.load(active)
        except InstallFailed as exc:
            self.error = f"{exc.reason}: {exc.detail}"
            log.error("cannot load the active model from %s: %s", active, exc)
            return None
        self.holder.swap(model)
        self.status = "active"
        return model

    def start(self) -> "DeviceAgent":
        self.resume()
        self.client.connect_async(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()
        for target, name in ((self._install_loop, "agent-installer"), (self._telemetry_loop, "agent-telemetry")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._desired.put(None)
        if self._connected.is_set():
            self.client.publish(self.topics.device(self.config.device_id, "status"), OFFLINE.to_bytes(), qos=1,
                                retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()
        for t in self._threads:
            t.join(timeout=5)
        self.shadow.stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- MQTT callbacks (network thread: enqueue only) -------------------------------------------
    def _on_connect(self, client, _u, _flags, reason, _props) -> None:
        if reason.is_failure:
            log.error("broker refused device %s: %s", self.config.device_id, reason)
            return
        me = self.config.device_id
        client.subscribe(self.topics.device(me, "desired"), qos=1)
        client.publish(self.topics.device(me, "status"), ONLINE.to_bytes(), qos=1, retain=True)
        self._connected.set()
        self.publish_reported()
        with self._send_lock:
            self.outbox.drain(self._send_spooled)

    def _on_message(self, _client, _u, msg) -> None:
        # Only our own desired topic counts (some brokers also replay other topics' retained messages).
        if msg.payload and msg.topic == self.topics.device(self.config.device_id, "desired"):
            self._desired.put({"payload": msg.payload})

    # -- installs --------------------------------------------------------------------------------
    def _install_loop(self) -> None:
        while not self._stop.is_set():
            item = self._desired.get()
            if item is None:
                return
            while not self._desired.empty():  # only the newest desired document matters
                newer = self._desired.get()
                if newer is None:
                    return
                item = newer
            try:
                self.handle_desired(item["payload"], item.get("attempt", 0))
            except Exception:  # the installer thread must survive anything
                log.exception("error handling a desired document")

    def handle_desired(self, payload: bytes, attempt: int = 0) -> None:
        try:
            doc = Desired.verify(payload, self.config.fleet_key)
        except ProtocolError as exc:
            self._event("desired_rejected", reason=exc.reason, detail=str(exc))
            return
        if doc.device_id != self.config.device_id:
            self._event("desired_rejected", reason="wrong_device", detail=f"document is for {doc.device_id}")
            return
        last = int(self.state.get("last_seq", 0))
        active = self.holder.model
        if doc.seq <= last:
            if doc.seq < last or not active or (active.info.name, active.info.version) != (doc.model, doc.version):
                self._event("desired_rejected", reason="replay", detail=f"sequence {doc.seq} is not newer than {last}",
                            seq=doc.seq)
            else:  # the applied document again (after a restart): bring its shadow back
                self._update_shadow(doc)
            return
        if active is not None and (active.info.name, active.info.version) == (doc.model, doc.version):
            self._applied(doc, active)
        else:
            self._install(doc, payload, attempt)
        self._update_shadow(doc)

    def _update_shadow(self, doc: Desired) -> None:
        before = self.shadow.reported()
        self.shadow.update(doc.shadow, self._event)
        if self.shadow.reported() != before:
            self.publish_reported()

    def _retry_later(self, payload: bytes, attempt: int) -> None:
        """Hand an install that crashed unexpectedly back to the installer thread after a backoff;
        a newer desired document queued meanwhile wins over it (the install loop keeps the newest)."""
        if attempt >= INTERNAL_RETRIES or self._stop.is_set():
            return
        timer = threading.Timer(min(2.0 ** attempt, 30.0), self._desired.put,
                                args=({"payload": payload, "attempt": attempt + 1},))
        timer.daemon = True
        timer.start()

    def _install(self, doc: Desired, payload: bytes = b"", attempt: int = 0) -> None:
        target = {"model": doc.model, "version": doc.version, "seq": doc.seq}
        self.status, self.error = "installing", None
        self._event("install_started", **target)
        self.publish_reported()
        try:
            installed = self.installer.install(doc)
        except InstallFailed as exc:
            self.status = "active" if self.holder.model else "idle"
            self.error = f"{exc.reason}: {exc.detail}"
            # The failed document is consumed: the same sequence number is not retried.
            self.state["last_seq"] = doc.seq
            self.store.save_state(self.state)
            self._event("install_failed", reason=exc.reason, detail=exc.detail, **target)
            self.publish_reported()
            return
        except Exception as exc:  # never let an install take the daemon down
            log.exception("install crashed")
            self.status, self.error = ("active" if self.holder.model else "idle"), f"internal_error: {exc}"
            self._event("install_failed", reason="internal_error", detail=str(exc), **target)
            self.publish_reported()
            if payload:
                self._retry_later(payload, attempt)
            return
        self.store.activate(installed.directory)
        self.holder.swap(installed.model)
        self.store.prune()
        self._applied(doc, installed.model)
        self._event("installed", **{**target, **describe(installed.model)})

    def _applied(self, doc: Desired, model: Model) -> None:
        self.state.update(last_seq=doc.seq, active=describe(model))
        self.store.save_state(self.state)
        self.status, self.error = "active", None
        self.publish_reported()

    # -- reporting -------------------------------------------------------------------------------
    def reported(self) -> Reported:
        model = self.holder.model
        return Reported(state=self.status, error=clip(self.error), seq=int(self.state.get("last_seq", 0)),
                        arch=platform.machine(), backends=tuple(available_backends()), tags=dict(self.config.tags),
                        ts=time.time(), shadow=self.shadow.reported(), **(describe(model) if model else {}))

    def publish_reported(self) -> None:
        topic = self.topics.device(self.config.device_id, "reported")
        self.client.publish(topic, self.reported().to_json(), qos=1, retain=True)

    def _event(self, event: str, **fields: Any) -> None:
        log.info("%s %s", event, fields)
        if "detail" in fields:
            fields["detail"] = clip(fields["detail"])
        self._publish_or_spool("events", Event(event=event, ts=time.time(), **fields).to_json())

    # -- telemetry -------------------------------------------------------------------------------
    def _telemetry_loop(self) -> None:
        while not self._stop.wait(self.config.telemetry_interval):
            self.send_telemetry()

    def send_telemetry(self) -> None:
        msg = self.recorder.collect(self.holder.model, dropped=self.outbox.dropped, shadow=self.shadow.collect())
        self._publish_or_spool("telemetry", msg.to_json())

    def _publish_or_spool(self, kind: str, payload: bytes) -> None:
        """Publish, or spool while the broker is away. Spooled messages go first once connected, so a
        message never overtakes older spooled ones and none is left behind by a connect racing this."""
        with self._send_lock:
            if not self.outbox.pending() and self._send_spooled(kind, payload):
                return
            self.outbox.put(kind, payload)
            if self._connected.is_set():
                self.outbox.drain(self._send_spooled)

    def _send_spooled(self, kind: str, payload: bytes) -> bool:
        if not self._connected.is_set():
            return False
        info = self.client.publish(self.topics.device(self.config.device_id, kind), payload, qos=1)
        return info.rc == 0
