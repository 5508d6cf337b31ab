"""A paho-mqtt client that speaks MQTT 5 when the broker does and 3.1.1 otherwise (shared by fleet and device)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt

from .errors import UsageError

MessageHandler = Callable[[str, bytes, bool], None]  # topic, payload, retained


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> "BrokerAddress":
        """mqtt://[USER:PASSWORD@]HOST:PORT (mqtts:// for TLS); USER and PASSWORD may be %-encoded."""
        u = urlparse(url if "://" in url else f"mqtt://{url}")
        try:
            port = u.port
        except ValueError:
            port = -1
        if u.scheme not in ("mqtt", "mqtts", "tcp") or not u.hostname or port == -1:
            raise UsageError(f"broker URL {redact_url(url)!r}: use mqtt://[USER:PASSWORD@]HOST:PORT (or mqtts:// for TLS)")
        tls = u.scheme == "mqtts"
        user = unquote(u.username) if u.username is not None else None
        password = unquote(u.password) if u.password is not None else None
        return cls(u.hostname, port or (8883 if tls else 1883), user, password, tls)

    def with_credentials(self, username: str, password: str) -> "BrokerAddress":
        return BrokerAddress(self.host, self.port, username, password, self.tls)


def redact_url(url: str) -> str:
    """A broker URL fit for logs and API answers: the password replaced by ***."""
    u = urlparse(url if "://" in url else f"mqtt://{url}")
    if u.password is None:
        return url
    host = u.netloc.rsplit("@", 1)[1]
    return u._replace(netloc=f"{u.username}:***@{host}").geturl()


def make_client(address: BrokerAddress, client_id: str, v5: bool, clean: bool = True) -> mqtt.Client:
    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    kwargs = {} if v5 else {"clean_session": clean}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs)
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def probe_v5(address: BrokerAddress, timeout: float = 5.0) -> bool:
    """True when the broker accepts an MQTT 5 connection (Mosquitto, EMQX); False for 3.1.1-only brokers."""
    done, ok = threading.Event(), []
    client = make_client(address, "", v5=True)

    def on_connect(_c, _u, _f, reason, _p) -> None:
        ok.append(not reason.is_failure)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *a: done.set()
    try:
        client.connect(address.host, address.port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return bool(ok and ok[0])
