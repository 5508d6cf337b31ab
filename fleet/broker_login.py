"""The fleet's own login on the embedded broker: a random password generated on the first start and kept
in the data directory (DATA/mqtt-fleet.password, mode 0600), so ingest workers and later runs reuse it."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from edgeml.atomic import atomic_write_text
from edgeml.errors import EdgeMLError

from .broker import EmbeddedBroker
from .provision import FLEET_USERNAME, device_url, stored_hash

log = logging.getLogger("edgeml.fleet")
PASSWORD_NAME = "mqtt-fleet.password"


def fleet_password(data_dir: Path) -> str:
    path = data_dir / PASSWORD_NAME
    if path.is_file():
        text = path.read_text().strip()
        if text:
            return text
    password = secrets.token_urlsafe(32)
    old = os.umask(0o077)
    try:
        atomic_write_text(path, password + "\n")
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return password


def start_embedded(service: Any) -> tuple[EmbeddedBroker, str]:
    """Start the embedded broker for a fleet service; returns it and the URL the fleet logs in with."""
    config = service.config
    if config.insecure_broker:
        log.warning("the embedded MQTT broker accepts anonymous clients with no topic ACL (--insecure-broker): "
                    "any local process can read and forge every device's messages")
        broker = EmbeddedBroker("127.0.0.1", config.mqtt_port).start()
        return broker, broker.url
    from .broker_auth import BrokerAuthority

    try:
        password = fleet_password(config.data_dir)
    except OSError as exc:
        raise EdgeMLError(f"cannot keep the fleet's MQTT password under {config.data_dir}: {exc}") from None
    authority = BrokerAuthority(service.topics, password, lambda device_id: stored_hash(service.engine, device_id))
    broker = EmbeddedBroker("127.0.0.1", config.mqtt_port, authority).start()
    return broker, device_url(broker.url, FLEET_USERNAME, password)
