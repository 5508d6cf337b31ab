"""Per-device MQTT credentials and the Mosquitto password-file and ACL entries that confine a device
to its own topics (`edgeml fleet provision DEVICE`)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from typing import Any

from edgeml.protocol import Topics

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for the $7$ (PBKDF2-SHA512) format


def mosquitto_password_hash(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The `$7$` hash Mosquitto 2 reads from its password_file."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def acl_entries(device_id: str, topics: Topics) -> list[str]:
    """Mosquitto ACL lines: a device reads its desired document and writes its own state and telemetry."""
    return [
        f"user {device_id}",
        f"topic read {topics.device(device_id, 'desired')}",
        *(f"topic write {topics.device(device_id, kind)}" for kind in ("reported", "status", "telemetry", "events")),
    ]


def fleet_acl_entries(username: str, topics: Topics) -> list[str]:
    return [f"user {username}", f"topic read {topics.prefix}/devices/#", f"topic write {topics.prefix}/devices/+/desired"]


def provision_device(service: Any, device_id: str) -> dict[str, Any]:
    password = secrets.token_urlsafe(24)
    hashed = mosquitto_password_hash(password)
    service.devices.touch(device_id, credentials_hash=hashed, online=False)
    return {
        "device_id": device_id,
        "username": device_id,
        "password": password,
        "password_file_line": f"{device_id}:{hashed}",
        "acl": acl_entries(device_id, service.topics),
        "broker": getattr(service, "broker_url", None),
    }
