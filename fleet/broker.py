"""The embedded MQTT broker (amqtt) for a first run: localhost only, no configuration.

Production points `edgeml fleet serve --broker mqtt://HOST:PORT` at Mosquitto or an EMQX cluster.
amqtt speaks MQTT 3.1.1 only, so with it the fleet subscribes without shared subscriptions.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from edgeml.errors import EdgeMLError, require


class _SnapshotDict(dict):
    """amqtt 0.12 iterates its subscription table across awaits while other clients (un)subscribe
    ("dictionary changed size during iteration" drops a connecting client); iterate a snapshot."""

    def __iter__(self):
        return iter(list(super().keys()))


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        require("amqtt", "fleet")
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        ready, failure = threading.Event(), []

        def run() -> None:
            from amqtt.broker import Broker

            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                "topic-check": {"enabled": False},
            }
            try:
                self._broker = Broker(config, loop=loop)
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
