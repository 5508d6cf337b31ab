"""The MQTT protocol between the fleet and its devices: topics, signed documents, JSON framing.

The messages themselves are typed contracts in edgeml.messages (Desired, Reported, Status, Telemetry,
Event); this module holds what they share: topics, canonical JSON, signatures and ProtocolError.

Topics (prefix `edgeml` by default), for device ID:
    PREFIX/devices/ID/desired    fleet -> device, retained, QoS 1, signed JSON with a sequence number
    PREFIX/devices/ID/reported   device -> fleet, retained, QoS 1
    PREFIX/devices/ID/status     retained "online" / "offline" (offline is the device's Last Will)
    PREFIX/devices/ID/telemetry  device -> fleet, QoS 1, every interval
    PREFIX/devices/ID/events     device -> fleet, QoS 1
    PREFIX/devices/ID/telemetry_ack  fleet -> device, retained, QoS 1: {"seq": N}, every telemetry
                                 message with seq <= N is stored (the device keeps the rest spooled)

A device may publish only reported/status/telemetry/events under its own ID and subscribe only to its
own desired and telemetry_ack; the broker's ACL enforces it (see edgeml.fleet.provision).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import EdgeMLError

DEFAULT_PREFIX = "edgeml"
SHARED_GROUP = "edgeml-fleet"
MAX_MESSAGE_BYTES = 256 * 1024
KINDS = ("desired", "reported", "status", "telemetry", "events", "telemetry_ack")
DEVICE_PUBLISHES = ("reported", "status", "telemetry", "events")
DEVICE_SUBSCRIBES = ("desired", "telemetry_ack")
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ProtocolError(EdgeMLError):
    """A message that does not parse or does not fit its schema.

    `reason` is a short, bounded counter key ("not_json", "oversized", "bad_schema", "bad_signature",
    ...); `detail` says what was wrong; `field` names the offending field when there is one.
    """

    def __init__(self, reason: str, detail: str = "", field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason, reason=reason)
        self.detail = detail
        self.field = field


@dataclass(frozen=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    def device(self, device_id: str, kind: str) -> str:
        return f"{self.prefix}/devices/{device_id}/{kind}"

    def all_devices(self, kind: str, shared: bool = False, group: str = SHARED_GROUP) -> str:
        topic = f"{self.prefix}/devices/+/{kind}"
        return f"$share/{group}/{topic}" if shared else topic

    def parse(self, topic: str) -> tuple[str, str]:
        """(device_id, kind) of a device topic; ProtocolError for anything else."""
        parts = topic.split("/")
        head = self.prefix.split("/")
        if len(parts) != len(head) + 3 or parts[: len(head)] != head or parts[len(head)] != "devices" or parts[-1] not in KINDS:
            raise ProtocolError("bad_topic", topic)
        device_id = parts[-2]
        if not DEVICE_ID_RE.match(device_id):
            raise ProtocolError("bad_device_id", device_id)
        return device_id, parts[-1]


def valid_device_id(device_id: str) -> bool:
    return bool(DEVICE_ID_RE.match(device_id))


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sign_document(doc: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The wire form of a signed document: {"doc": ..., "sig": base64(ed25519(canonical_json(doc)))}."""
    return canonical_json({"doc": doc, "sig": base64.b64encode(key.sign(canonical_json(doc))).decode()})


def verify_document(payload: bytes, key: Ed25519PublicKey | None) -> dict[str, Any]:
    """Parse a signed document and check its signature (skipped only when key is None)."""
    msg = parse_json(payload)
    doc, sig = msg.get("doc"), msg.get("sig")
    if not isinstance(doc, dict) or not isinstance(sig, str):
        raise ProtocolError("bad_schema", "expected {doc, sig}")
    if key is not None:
        try:
            key.verify(base64.b64decode(sig, validate=True), canonical_json(doc))
        except (InvalidSignature, ValueError):
            raise ProtocolError("bad_signature", "desired document signature does not verify") from None
    return doc


def parse_json(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError("oversized", f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly nested JSON
        raise ProtocolError("not_json") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_schema", "expected a JSON object")
    return obj
