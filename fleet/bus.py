"""The fleet's MQTT side: subscribe to every device's reported/status/telemetry/events (shared
subscriptions on MQTT 5 brokers, so several fleet workers can split ingest), dispatch, publish desired."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Callable

import paho.mqtt.client as mqtt

from edgeml.errors import EdgeMLError
from edgeml.mqtt import BrokerAddress, make_client, probe_v5
from edgeml.protocol import ProtocolError, Topics

from .telemetry import IngestCounters

log = logging.getLogger("edgeml.fleet")
Handler = Callable[[str, bytes], None]  # device_id, payload
INGEST_KINDS = ("reported", "status", "telemetry", "events")
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 3.0  # paho's default backoff grows to 120 s: devices' spools would flush into no subscriber


class FleetBus:
    def __init__(self, broker_url: str, topics: Topics, handlers: dict[str, Handler], counters: IngestCounters,
                 session: str | None = None, split: bool = False, group: str | None = None) -> None:
        self.address = BrokerAddress.parse(broker_url)
        self.topics, self.handlers, self.counters = topics, handlers, counters
        # A named session is persistent (clean_session off): while this worker is away, the broker keeps
        # its subscriptions and queues QoS 1 telemetry for it (and with broker persistence, across
        # broker restarts), so a fleet restart loses nothing. No name: a throwaway session.
        self.session = session
        self.split = split  # one of several ingest workers: telemetry/events through a shared subscription
        self.group = group or (f"edgeml-fleet-{session}" if session else "edgeml-fleet")
        self.v5 = False
        self.client: mqtt.Client | None = None
        self._connected = threading.Event()

    def start(self, timeout: float = 15.0) -> None:
        # MQTT 5 brokers (Mosquitto, EMQX) also offer shared subscriptions to MQTT 3.1.1 clients, and a
        # 3.1.1 session costs paho much less per message (no Properties objects): connect with 3.1.1
        # and use $share only where the broker has it. amqtt (the embedded broker) has neither.
        self.v5 = probe_v5(self.address)
        client_id = f"edgeml-fleet-{self.session}" if self.session else f"edgeml-fleet-{uuid.uuid4().hex[:8]}"
        client = make_client(self.address, client_id, v5=False, clean=self.session is None)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)  # back soon after a broker restart
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = lambda *a: self._connected.clear()
        try:
            client.connect(self.address.host, self.address.port, keepalive=30)
        except OSError as exc:
            raise EdgeMLError(f"cannot reach the MQTT broker at {self.address.host}:{self.address.port}: {exc}") from None
        client.loop_start()
        self.client = client
        if not self._connected.wait(timeout):
            raise EdgeMLError(f"the MQTT broker at {self.address.host}:{self.address.port} did not accept the fleet's connection")

    def _on_connect(self, client: mqtt.Client, _u, _flags, reason, _props=None) -> None:
        if reason.is_failure:
            log.error("broker refused the fleet: %s", reason)
            return
        # With several ingest workers, telemetry and events are split between them with shared
        # subscriptions; the group is named after the fleet, so two fleets on one broker never split
        # each other's stream. A single fleet process subscribes plainly: plain subscriptions of a
        # persistent session survive a broker restart (Mosquitto 2.0 does not restore shared ones).
        # Reported state and status are retained, and retained messages are not delivered to shared
        # subscriptions, so those are subscribed directly. A persistent session remembers what an
        # earlier run subscribed: drop whatever this process does not handle.
        wanted = {self._filter(kind) for kind in INGEST_KINDS if kind in self.handlers}
        stale = {self._filter(kind, shared) for kind in INGEST_KINDS for shared in (False, True)} - wanted
        if self.session and stale:
            client.unsubscribe(sorted(stale))
        client.subscribe([(f, 1) for f in sorted(wanted)])
        self._connected.set()

    def _on_message(self, _client, _u, msg: mqtt.MQTTMessage) -> None:
        device_id = None
        try:
            device_id, kind = self.topics.parse(msg.topic)
            handler = self.handlers.get(kind)
            if handler is None:
                return
            handler(device_id, msg.payload)
            self.counters.accept(kind)
        except ProtocolError as exc:
            self.counters.drop(exc.reason, device_id, exc.detail)
            log.debug("dropped message on %s: %s", msg.topic, exc)
        except Exception:  # a bad message must never stop ingest
            self.counters.drop("handler_error", device_id)
            log.exception("error handling a message on %s", msg.topic)

    def _filter(self, kind: str, shared: bool | None = None) -> str:
        if shared is None:
            shared = self.split and self.v5 and kind in ("telemetry", "events")
        return self.topics.all_devices(kind, shared=shared, group=self.group)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        if self.client is None:
            raise EdgeMLError("the fleet's MQTT client is not started")
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise EdgeMLError(f"cannot publish to {topic}: {mqtt.error_string(info.rc)}")

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()
