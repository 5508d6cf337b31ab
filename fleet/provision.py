"""Per-device MQTT credentials (`edgeml fleet provision DEVICE`) and the complete Mosquitto configuration
that confines each device to its own topics: password-file line, ACL lines for the device and the fleet
user, and the mosquitto.conf lines that turn them on.

The same credentials (stored hashed in the fleet database) and the same topic rules are enforced by the
embedded broker (edgeml.fleet.broker_auth).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.engine import Engine

from edgeml.errors import UsageError
from edgeml.mqtt import BrokerAddress
from edgeml.protocol import DEVICE_PUBLISHES, DEVICE_SUBSCRIBES, Topics, valid_device_id

from . import db

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for the $7$ (PBKDF2-SHA512) format
FLEET_USERNAME = "edgeml-fleet"  # the fleet's own user on the embedded broker (and the default on Mosquitto)
RESERVED_PREFIX = "edgeml-fleet"  # the fleet's usernames and client ids: never a device id
MOSQUITTO_PASSWORD_FILE = "/etc/mosquitto/edgeml.passwd"
MOSQUITTO_ACL_FILE = "/etc/mosquitto/edgeml.acl"


def mosquitto_password_hash(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The `$7$` hash Mosquitto 2 reads from its password_file."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_mosquitto_hash(password: str, hashed: str) -> bool:
    """True when `password` matches a `$7$` hash (constant-time); False for anything malformed."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit() or not 1 <= int(parts[2]) <= 10_000_000:
        return False
    try:
        salt, digest = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2])), digest)


def acl_entries(device_id: str, topics: Topics) -> list[str]:
    """Mosquitto ACL lines: a device reads its desired document and telemetry acknowledgements and writes
    its own state, status, telemetry and events; nothing else."""
    return [
        f"user {device_id}",
        *(f"topic read {topics.device(device_id, kind)}" for kind in DEVICE_SUBSCRIBES),
        *(f"topic write {topics.device(device_id, kind)}" for kind in DEVICE_PUBLISHES),
    ]


def fleet_acl_entries(username: str, topics: Topics) -> list[str]:
    """The fleet reads everything devices publish and writes their desired documents and acknowledgements."""
    return [f"user {username}", f"topic read {topics.prefix}/devices/#",
            *(f"topic write {topics.prefix}/devices/+/{kind}" for kind in DEVICE_SUBSCRIBES)]


def mosquitto_conf_lines(password_file: str = MOSQUITTO_PASSWORD_FILE, acl_file: str = MOSQUITTO_ACL_FILE) -> list[str]:
    """mosquitto.conf lines for an authenticated fleet broker. `use_username_as_clientid` makes a client's
    id its username, so a device with valid credentials cannot connect as another device's client id
    (which would disconnect that device and publish its Last Will)."""
    return ["allow_anonymous false", f"password_file {password_file}", f"acl_file {acl_file}",
            "use_username_as_clientid true"]


def check_device_id(device_id: str) -> None:
    if not valid_device_id(device_id):
        raise UsageError("device ids use letters, digits, '.', '_' and '-'")
    if device_id.startswith(RESERVED_PREFIX):
        raise UsageError(f"device ids starting with {RESERVED_PREFIX!r} are reserved for the fleet's own MQTT user")


def stored_hash(engine: Engine, device_id: str) -> str | None:
    """The credentials hash `provision` stored for a device (None: not provisioned)."""
    with engine.connect() as conn:
        row = conn.execute(select(db.devices.c.credentials_hash).where(db.devices.c.id == device_id)).first()
    return row[0] if row and isinstance(row[0], str) else None


def device_url(broker_url: str, username: str, password: str) -> str:
    """The broker URL a device passes to `edgeml serve --fleet`, with its credentials."""
    a = BrokerAddress.parse(broker_url)
    return f"{'mqtts' if a.tls else 'mqtt'}://{quote(username, safe='')}:{quote(password, safe='')}@{a.host}:{a.port}"


def provision_device(service: Any, device_id: str) -> dict[str, Any]:
    """New credentials for a device (replacing any earlier ones) and everything Mosquitto needs for it."""
    check_device_id(device_id)
    password = secrets.token_urlsafe(24)
    hashed = mosquitto_password_hash(password)
    if service.devices.get(device_id) is None:
        service.devices.touch(device_id, credentials_hash=hashed, online=False)
    else:
        service.devices.touch(device_id, credentials_hash=hashed)
    broker = getattr(service, "broker_url", None)
    fleet_user = getattr(service, "fleet_mqtt_username", None) or FLEET_USERNAME
    return {
        "device_id": device_id,
        "username": device_id,
        "password": password,
        "broker": broker,
        "device_url": device_url(broker, device_id, password) if broker else None,
        "password_file_line": f"{device_id}:{hashed}",
        "acl": acl_entries(device_id, service.topics),
        "fleet_acl": fleet_acl_entries(fleet_user, service.topics),
        "mosquitto_conf": mosquitto_conf_lines(),
    }
