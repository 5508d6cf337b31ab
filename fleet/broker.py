"""The embedded MQTT broker (amqtt) for a first run: localhost only, authenticated by default.

Devices log in with the credentials `edgeml fleet provision` made and may use only their own topics;
the fleet logs in as its own user (edgeml.fleet.broker_auth). `authority=None` (`--insecure-broker`)
gives the old anonymous broker with no ACL. Production points `edgeml fleet serve --broker` at
Mosquitto or an EMQX cluster. amqtt speaks MQTT 3.1.1 only, so with it the fleet subscribes without
shared subscriptions.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any

from edgeml.errors import EdgeMLError, require

# Client ids whose clean-session deletion amqtt asked for before the client authenticated (see _AuthFirst).
_DEFERRED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("edgeml_deferred_deletes", default=None)


class _SnapshotDict(dict):
    """amqtt 0.12 iterates its subscription table across awaits while other clients (un)subscribe
    ("dictionary changed size during iteration" drops a connecting client); iterate a snapshot."""

    def __iter__(self):
        return iter(list(super().keys()))


def _auth_first_broker(base: type) -> type:
    """amqtt 0.12 acts on a CONNECT before checking its credentials: a clean-session CONNECT deletes the
    session of that client id, and a second connection with a connected client's id takes it over, even
    when the newcomer is then refused. This broker refuses first and lets only authenticated clients
    touch an existing session."""
    from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket

    class _AuthFirst(base):  # type: ignore[misc, valid-type]
        async def _initialize_client_session(self, *args: Any) -> Any:
            token = _DEFERRED.set([])
            try:
                handler, session = await super()._initialize_client_session(*args)
                session.edgeml_deferred_deletes = _DEFERRED.get()
            finally:
                _DEFERRED.reset(token)
            return handler, session

        async def _delete_session(self, client_id: str) -> None:
            pending = _DEFERRED.get()
            if pending is not None:
                pending.append(client_id)
                return
            await super()._delete_session(client_id)

        async def _handle_client_session(self, reader: Any, writer: Any, client_session: Any, *rest: Any) -> None:
            listener = rest[-1]
            if not await self._authenticate(client_session, self.listeners_config[listener]):
                await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                await writer.close()
                return
            for client_id in getattr(client_session, "edgeml_deferred_deletes", []):
                await self._delete_session(client_id)
            await super()._handle_client_session(reader, writer, client_session, *rest)

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
