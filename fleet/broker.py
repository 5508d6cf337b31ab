"""The embedded MQTT broker (amqtt) for a first run: localhost only, authenticated by default.

Devices log in with the credentials `edgeml fleet provision` made and may use only their own topics;
the fleet logs in as its own user (edgeml.fleet.broker_auth). `authority=None` (`--insecure-broker`)
gives the old anonymous broker with no ACL. Production points `edgeml fleet serve --broker` at
Mosquitto or an EMQX cluster. amqtt speaks MQTT 3.1.1 only, so with it the fleet subscribes without
shared subscriptions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from edgeml.errors import EdgeMLError, require

class _SnapshotDict(dict):
    """amqtt 0.12 iterates its subscription table across awaits (the topic checks of the authenticated
    broker await in its broadcast loop) while other clients (un)subscribe: "dictionary changed size during
    iteration" drops a connecting client or a message. Iterate a snapshot."""

    def __iter__(self):
        return iter(list(super().keys()))

    def items(self):
        return list(super().items())

    def keys(self):
        return list(super().keys())

    def values(self):
        return list(super().values())


def _auth_first_broker(base: type) -> type:
    """amqtt 0.12 acts on a CONNECT before it checks the credentials: a clean-session CONNECT deletes the
    session of that client id, a persistent one overwrites the connected client's username and Last Will,
    and a second connection with a connected client's id takes it over, even when the newcomer is then
    refused. This broker checks the credentials first (written against amqtt 0.12's
    Broker._initialize_client_session, which it replaces) and lets only an authenticated client touch an
    existing session."""
    from amqtt.errors import AMQTTError, MQTTError, NoDataError
    from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
    from amqtt.utils import gen_client_id

    from .provision import FLEET_USERNAME

    class _AuthFirst(base):  # type: ignore[misc, valid-type]
        async def _initialize_client_session(self, reader: Any, writer: Any, address: str, port: int) -> Any:
            try:
                handler, session = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
            except (AMQTTError, MQTTError, NoDataError, OSError) as exc:  # a bad first packet, or the client left
                raise AMQTTError(exc) from exc  # (the fleet's MQTT 5 probe): logged by the caller, no traceback
            if not await self._authenticate(session, None):
                await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                await writer.close()
                raise AMQTTError(f"client {session.client_id!r} from {address}:{port} not authorized")
            # From here on, amqtt's own session handling, for an authenticated client only.
            if session.clean_session:
                if session.client_id:
                    await self._delete_session(session.client_id)
                else:
                    session.client_id = gen_client_id()
                session.parent = 0
            elif session.client_id in self._sessions:
                existing, _ = self._sessions[session.client_id]
                for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive", "username", "password"):
                    setattr(existing, name, getattr(session, name))
                session = existing
                session.parent = 1
            else:
                session.parent = 0
            delay = self.config.get("timeout-disconnect-delay", 0)
            if session.keep_alive > 0 and isinstance(delay, int):
                session.keep_alive += delay
            session.edgeml_fleet = session.username == FLEET_USERNAME  # authenticated as the fleet
            return handler, session

        async def _topic_filtering(self, session: Any, topic: str, action: Any) -> bool:
            # The fleet's own (authenticated) user may use every topic: skip the plugin round trip (two
            # tasks per message) on the path every telemetry message takes to the fleet.
            if session is not None and session.username == FLEET_USERNAME and getattr(session, "edgeml_fleet", False):
                return True
            return await super()._topic_filtering(session, topic, action)

    return _AuthFirst


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883, authority: Any = None) -> None:
        self.host, self.port = host, port
        self.authority = authority  # a broker_auth.BrokerAuthority; None: anonymous, no ACL (insecure)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        listeners = {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}}
        if self.authority is None:
            return {"listeners": listeners, "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                    "topic-check": {"enabled": False}}
        from .broker_auth import plugin_config

        return {"listeners": listeners, "plugins": plugin_config(self.authority)}

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        require("amqtt", "fleet")
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        ready, failure = threading.Event(), []

        def run() -> None:
            import warnings

            from amqtt.broker import Broker

            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # amqtt's own notices about config styles
                    cls = Broker if self.authority is None else _auth_first_broker(Broker)
                    self._broker = cls(self._config(), loop=loop)
                self._broker._subscriptions = _SnapshotDict(self._broker._subscriptions)
                loop.run_until_complete(self._broker.start())
            except Exception as exc:  # port in use and the like
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="embedded-mqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            raise EdgeMLError(f"cannot start the embedded MQTT broker on {self.host}:{self.port}: {failure[0] if failure else 'timeout'}")
        return self

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(timeout=10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
