"""The device agent: MQTT session, desired-state handling, installs, reported state, telemetry.

Threads: paho's network loop (callbacks only enqueue), one installer thread (one install at a time,
the newest desired document wins and preempts a running download), one telemetry thread (every
interval; it also applies telemetry acknowledgements and notices when the device turns stale).

What the device trusts (README "What the device trusts"): a desired document must verify with the
pinned fleet key, be addressed to this device, be fresh (issued_at/expires_at, Desired.freshness) and
carry a sequence number above the last applied one, which survives the loss of state.json (seq.json,
and the signed document kept in each installed version's directory). A re-signed document of the
applied sequence number only renews freshness. When the newest document has expired the device keeps
serving its active model and reports `stale: ...` in its reported error.

Failed installs: transient reasons (installer.TRANSIENT) are retried with backoff (RETRY_DELAYS);
final ones consume the sequence number and are reported with their reason. The reported state always
describes the model actually serving (never `installing` after a failure).
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
from edgeml.messages import OFFLINE, ONLINE, Desired, Event, Reported, TelemetryAck, clip
from edgeml.protocol import ProtocolError, Topics

from ..backends import available_backends
from ..model import Model
from ..selection import Preference
from ..server.holder import ModelHolder
from .capture import CaptureSampler
from .download import DownloadLimits
from .installer import CANCELLED, InstallFailed, Installer, describe
from .outbox import Outbox
from .shadow import ShadowRunner
from .store import DeviceStore
from .telemetry import TelemetryRecorder

log = logging.getLogger("edgeml.agent")

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # a transient install failure is retried after these (seconds)


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
    download: DownloadLimits = field(default_factory=DownloadLimits)


class DeviceAgent:
    def __init__(self, config: AgentConfig, holder: ModelHolder) -> None:
        self.config, self.holder = config, holder
        self.topics = Topics(config.prefix)
        self.store = DeviceStore(config.store)
        self.installer = Installer(self.store, config.bundle_key, config.preference, config.threads, config.download)
        self.recorder = TelemetryRecorder()
        self.shadow = ShadowRunner(self.store.root / "shadow", lambda store: Installer(
            store, config.bundle_key, config.preference, config.threads, config.download), config.shadow_sample)
        self.capture = CaptureSampler(self.store.root / "capture")  # data capture (off until a policy arrives)
        self.recorder.mirror = lambda *req: (self.shadow.offer(*req), self.capture.offer(*req))
        self.outbox = Outbox(self.store.root / "outbox", config.outbox_limit)
        self.recorder.seq = self.outbox.last_seq  # telemetry sequence numbers stay monotonic across restarts
        self.state = self.store.state()
        self._raise_seq_floor()
        self.status = "idle"
        self.error: str | None = None
        self._stale = False
        self._desired: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._newest: bytes | None = None  # the newest desired payload received (preemption, stale retries)
        self._probe: tuple[bytes | None, int] = (None, -1)  # (payload, its seq if valid else -1)
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
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

    def _raise_seq_floor(self) -> None:
        """last_seq is at least the sequence number of the installed versions' own signed documents
        (state.json and seq.json may both be lost: a replayed older document must still be refused)."""
        floor, fresh = 0, None
        for payload in self.store.installed_desired():
            try:
                doc = Desired.verify(payload, self.config.fleet_key)
            except ProtocolError:
                continue
            if doc.device_id == self.config.device_id:
                floor = max(floor, doc.seq)
                fresh = doc.expires_at if fresh is None else max(fresh, doc.expires_at or 0)
        if floor > int(self.state.get("last_seq", 0)) or (fresh and "fresh_until" not in self.state):
            self.state["last_seq"] = max(floor, int(self.state.get("last_seq", 0)))
            self.state.setdefault("fresh_until", fresh)
            self.store.save_state(self.state)

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
        self._stale = self.stale()
        self.capture.start()
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
        self.capture.stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- MQTT callbacks (network thread: enqueue only) -------------------------------------------
    def _on_connect(self, client, _u, _flags, reason, _props) -> None:
        if reason.is_failure:
            log.error("broker refused device %s: %s", self.config.device_id, reason)
            return
        me = self.config.device_id
        client.subscribe([(self.topics.device(me, "desired"), 1), (self.topics.device(me, "telemetry_ack"), 1)])
        client.publish(self.topics.device(me, "status"), ONLINE.to_bytes(), qos=1, retain=True)
        self._connected.set()
        self.publish_reported()
        with self._send_lock:
            self.outbox.resend_all()  # the broker may have lost what it had not delivered yet
            self.outbox.drain(self._send_spooled)

    def _on_message(self, _client, _u, msg) -> None:
        # Only our own topics count (some brokers also replay other topics' retained messages).
        if not msg.payload:
            return
        if msg.topic == self.topics.device(self.config.device_id, "desired"):
            self._newest = msg.payload
            self._desired.put({"payload": msg.payload})
        elif msg.topic == self.topics.device(self.config.device_id, "telemetry_ack"):
            try:
                self._acks.put(TelemetryAck.parse(msg.payload).seq)
            except ProtocolError as exc:
                log.warning("ignoring a malformed telemetry acknowledgement: %s", exc)

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
            if item.get("attempt") and item["payload"] != self._newest:
                continue  # a retry of a document a newer one has replaced
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
        refused = doc.freshness(time.time())
        if refused is not None:
            when = "carries no validity dates" if doc.expires_at is None or doc.issued_at is None else \
                f"was issued at {doc.issued_at:.0f} and expires at {doc.expires_at:.0f}"
            self._event("desired_rejected", reason=refused, detail=f"sequence {doc.seq} {when} (now {time.time():.0f})",
                        seq=doc.seq)
            self._refresh_stale()
            return
        last = int(self.state.get("last_seq", 0))
        active = self.holder.model
        if doc.seq < last:
            self._event("desired_rejected", reason="replay", detail=f"sequence {doc.seq} is not newer than {last}",
                        seq=doc.seq)
            return
        self._renew_freshness(doc)
        if doc.seq == last:
            if active and (active.info.name, active.info.version) == (doc.model, doc.version):
                # The applied document again (a restart) or re-signed by the fleet: no reinstall.
                self._keep_proof(payload)
                self._update_shadow(doc)
            elif self.state.get("failed_seq") != doc.seq:
                self._event("desired_rejected", reason="replay", detail=f"sequence {doc.seq} is not newer than {last}",
                            seq=doc.seq)
            return
        if active is not None and (active.info.name, active.info.version) == (doc.model, doc.version):
            self._keep_proof(payload)
            self._applied(doc, active)
        elif not self._install(doc, payload, attempt):
            return
        self._update_shadow(doc)

    def _update_shadow(self, doc: Desired) -> None:
        self.capture.update(doc.capture)  # every accepted document carries (or drops) the capture policy
        before = self.shadow.reported()
        self.shadow.update(doc.shadow, self._event)
        if self.shadow.reported() != before:
            self.publish_reported()

    def _preempted(self, seq: int) -> bool:
        """A newer valid desired document arrived while installing `seq` (polled by the download)."""
        newest = self._newest
        if newest is None:
            return False
        if newest is not self._probe[0]:
            try:
                doc = Desired.verify(newest, self.config.fleet_key)
                ok = doc.device_id == self.config.device_id and doc.freshness(time.time()) is None
                self._probe = (newest, doc.seq if ok else -1)
            except ProtocolError:
                self._probe = (newest, -1)
        return self._probe[1] > seq

    def _retry_later(self, payload: bytes, attempt: int, delay: float) -> None:
        """Hand a failed install back to the installer thread after `delay`; a newer desired document
        received meanwhile wins over it (the install loop drops retries of replaced documents)."""
        timer = threading.Timer(delay, self._desired.put, args=({"payload": payload, "attempt": attempt + 1},))
        timer.daemon = True
        timer.start()

    def _install(self, doc: Desired, payload: bytes = b"", attempt: int = 0) -> bool:
        """Install and activate `doc`'s version; False when it failed (reported, maybe retried)."""
        target = {"model": doc.model, "version": doc.version, "seq": doc.seq}
        self.status, self.error = "installing", None
        self._event("install_started", **target)
        self.publish_reported()
        try:
            installed = self.installer.install(doc, cancelled=lambda: self._preempted(doc.seq))
        except InstallFailed as exc:
            return self._failed(doc, payload, attempt, exc)
        except Exception as exc:  # never let an install take the daemon down
            log.exception("install crashed")
            return self._failed(doc, payload, attempt, InstallFailed("internal_error", str(exc)))
        old = self.store.active_dir()
        old = old.resolve() if old is not None else None
        try:
            self.store.activate(installed.directory)
            self.store.save_desired(installed.directory, payload)
        except OSError as exc:
            try:
                self.store.restore_current(old)
            except OSError:
                log.exception("cannot restore the active link after a failed activation")
            return self._failed(doc, payload, attempt, InstallFailed("activation_failed", f"the device store: {exc}"))
        self.holder.swap(installed.model)
        self.store.prune()
        self._applied(doc, installed.model)
        self._event("installed", **{**target, **describe(installed.model)})
        return True

    def _failed(self, doc: Desired, payload: bytes, attempt: int, exc: InstallFailed) -> bool:
        """Report a failed install; the old model keeps serving and the state says so."""
        target = {"model": doc.model, "version": doc.version, "seq": doc.seq}
        self.status = "active" if self.holder.model else "idle"
        if exc.reason == CANCELLED:
            self._event("install_cancelled", reason="preempted", detail=exc.detail, **target)
            self.publish_reported()
            return False
        detail = exc.detail
        if exc.transient and payload and attempt < len(RETRY_DELAYS) and not self._stop.is_set():
            delay = RETRY_DELAYS[attempt]
            detail = f"{exc.detail} (transient: retry {attempt + 1} of {len(RETRY_DELAYS)} in {delay:g} s)"
            self._retry_later(payload, attempt, delay)
        else:  # final: the document is consumed, the same sequence number is not retried
            self.state.update(last_seq=doc.seq, failed_seq=doc.seq)
            self.store.save_state(self.state)
        self.error = f"{exc.reason}: {detail}"
        self._event("install_failed", reason=exc.reason, detail=detail, **target)
        self.publish_reported()
        return False

    def _applied(self, doc: Desired, model: Model) -> None:
        self.state.update(last_seq=doc.seq, active=describe(model), failed_seq=None)
        self.store.save_state(self.state)
        self.status, self.error = "active", None
        self.publish_reported()

    def _keep_proof(self, payload: bytes) -> None:
        active = self.store.active_dir()
        if active is not None:
            try:
                self.store.save_desired(active, payload)
            except OSError as exc:
                log.warning("cannot keep the desired document in %s: %s", active, exc)

    # -- freshness -------------------------------------------------------------------------------
    def _renew_freshness(self, doc: Desired) -> None:
        if doc.expires_at is not None and doc.expires_at > float(self.state.get("fresh_until") or 0):
            self.state["fresh_until"] = doc.expires_at
            self.store.save_state(self.state)
        self._refresh_stale()

    def stale(self) -> bool:
        """The newest desired document this device accepted has expired (the fleet stopped renewing it)."""
        until = self.state.get("fresh_until")
        return until is not None and time.time() >= float(until)

    def _refresh_stale(self) -> None:
        stale = self.stale()
        if stale != self._stale:
            self._stale = stale
            if stale:
                log.warning("the newest desired document expired; serving the active model and reporting stale")
            self.publish_reported()

    # -- reporting -------------------------------------------------------------------------------
    def reported(self) -> Reported:
        model = self.holder.model
        error = self.error
        if self._stale:
            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(self.state["fresh_until"])))
            error = f"stale: the newest desired document expired at {until}" + (f"; {error}" if error else "")
        return Reported(state=self.status, error=clip(error), seq=int(self.state.get("last_seq", 0)),
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
            try:
                self._refresh_stale()
                self.send_telemetry()
            except Exception:  # a full disk or the like: try again next interval
                log.exception("telemetry failed")

    def send_telemetry(self) -> None:
        self._apply_acks()
        msg = self.recorder.collect(self.holder.model, dropped=self.outbox.dropped, shadow=self.shadow.collect(),
                                    cache=self.holder.cache_stats(), capture=dict(self.capture.counts),
                                    capturing=self.capture.policy is not None)
        with self._send_lock:
            self.outbox.put("telemetry", msg.to_json(), seq=msg.seq)  # kept until the fleet acknowledges it
            if self._connected.is_set():
                self.outbox.drain(self._send_spooled)

    def _apply_acks(self) -> None:
        while True:
            try:
                seq = self._acks.get_nowait()
            except queue.Empty:
                return
            self.outbox.ack(seq)
            if seq > self.recorder.seq:  # a reset store: continue above what the fleet already has
                self.recorder.seq = seq

    def _publish_or_spool(self, kind: str, payload: bytes) -> None:
        """Publish, or spool while the broker is away. Spooled messages go first once connected, so a
        message never overtakes older spooled ones and none is left behind by a connect racing this."""
        with self._send_lock:
            if not self.outbox.unsent() and self._send_spooled(kind, payload):
                return
            self.outbox.put(kind, payload)
            if self._connected.is_set():
                self.outbox.drain(self._send_spooled)

    def _send_spooled(self, kind: str, payload: bytes) -> bool:
        if not self._connected.is_set():
            return False
        info = self.client.publish(self.topics.device(self.config.device_id, kind), payload, qos=1)
        return info.rc == 0
