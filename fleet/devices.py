"""Device registry: self-registration on first contact, status, reported state, and desired assignments."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from edgeml.messages import Desired, Event, Reported, ShadowSpec, Status
from edgeml.messages.capture import CapturePolicy
from edgeml.protocol import Topics

from . import db

log = logging.getLogger("edgeml.fleet")
Publish = Callable[[str, bytes, bool], None]  # topic, payload, retain
# The fleet issues sequence numbers itself. A device may report one it did not issue (a fresh fleet
# database, another writer with the key) and the fleet moves its counter past it, but only within
# MAX_SEQ_JUMP of what it issued and below SEQ_CEILING (the counter is a 32-bit column on Postgres):
# anything beyond is a forged report, ignored, counted and recorded as a `seq_refused` event.
MAX_SEQ_JUMP = 1_000_000
SEQ_CEILING = 2**31 - 1
SEQ_REFUSED = "seq_refused"


@dataclass(frozen=True)
class ReportedOutcome:
    reissue: tuple[str, str] | None = None  # (model, version) to send the device again
    refused_seq: int | None = None  # a reported seq the fleet did not adopt


class DeviceRegistry:
    def __init__(self, engine: Engine, topics: Topics, sign_key: Ed25519PrivateKey, public_url: str) -> None:
        self.engine, self.topics, self.sign_key, self.public_url = engine, topics, sign_key, public_url.rstrip("/")

    def touch(self, device_id: str, **fields: Any) -> None:
        """Insert the device on first contact, else update the given fields and last_seen."""
        now = time.time()
        with self.engine.begin() as conn:
            exists = conn.execute(select(db.devices.c.id).where(db.devices.c.id == device_id)).first()
            if exists is None:
                conn.execute(db.devices.insert().values(id=device_id, tags=fields.pop("tags", {}) or {}, first_seen=now,
                                                        last_seen=now, online=fields.pop("online", True), desired_seq=0, **fields))
            else:
                conn.execute(update(db.devices).where(db.devices.c.id == device_id).values(last_seen=now, **fields))

    def on_status(self, device_id: str, status: Status) -> None:
        self.touch(device_id, online=status.online)

    def on_reported(self, device_id: str, doc: Reported) -> ReportedOutcome:
        """Store the reported state; the outcome says whether the desired document must be reissued.

        A device that applied a sequence number this fleet never issued (the fleet's database was
        reset, or another fleet wrote to its topic) would refuse every document the fleet sends next
        as a replay. The fleet then moves its counter past the device's and, if the device is not on
        the desired version, reissues it. A failed install of the fleet's own latest document is not
        retried this way (same sequence number): retries are an operator's or a rollout's decision.
        A seq beyond MAX_SEQ_JUMP above the fleet's counter (or SEQ_CEILING) is refused, never adopted.
        """
        fields: dict[str, Any] = {"reported": doc.to_dict(), "state": doc.state, "error": doc.error,
                                  "model": doc.model, "version": doc.version}
        if doc.arch is not None:
            fields["arch"] = doc.arch
        if doc.backends is not None:
            fields["backends"] = list(doc.backends)
        if doc.tags is not None:
            fields["tags"] = doc.tags
        self.touch(device_id, **fields)
        seq = doc.seq
        with self.engine.begin() as conn:
            row = conn.execute(select(db.devices.c.desired_seq, db.devices.c.desired_model, db.devices.c.desired_version)
                               .where(db.devices.c.id == device_id)).first()
            issued = _seq(row.desired_seq) if row is not None else 0
            if row is None or seq <= issued:
                return ReportedOutcome()
            if seq > issued + MAX_SEQ_JUMP or seq >= SEQ_CEILING:
                conn.execute(db.events.insert().values(
                    device_id=device_id, received_at=time.time(), event=SEQ_REFUSED,
                    payload=Event(SEQ_REFUSED, ts=time.time(), reason="not_issued", seq=seq,
                                  detail=f"reported sequence {seq} is far beyond the {issued} this fleet issued; "
                                         f"ignored").to_dict()))
                log.warning("device %s reported sequence %s, far beyond the %s this fleet issued: ignored",
                            device_id, seq, issued)
                return ReportedOutcome(refused_seq=seq)
            conn.execute(update(db.devices).where(db.devices.c.id == device_id).values(desired_seq=seq))
        if row.desired_model and (doc.model, doc.version) != (row.desired_model, row.desired_version):
            return ReportedOutcome(reissue=(row.desired_model, row.desired_version))
        return ReportedOutcome()

    def list(self, tag: dict[str, str] | None = None, version: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            found = conn.execute(select(*db.lenient_columns(db.devices)).order_by(db.devices.c.id)).mappings().all()
        out = []
        for r in (device_row(dict(f)) for f in found):
            if r is None:
                continue
            if tag and any((r["tags"] or {}).get(k) != v for k, v in tag.items()):
                continue
            if version and r["version"] != version:
                continue
            if state and r["state"] != state and not (state in ("online", "offline") and r["online"] == (state == "online")):
                continue
            out.append(r)
        return out

    def get(self, device_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*db.lenient_columns(db.devices)).where(db.devices.c.id == device_id)).mappings().first()
        return None if row is None else device_row(dict(row))

    def assign(self, device_ids: list[str], model: str, version: str, publish: Publish,
               shadow: tuple[str, str] | None = None,
               capture: Callable[[str], CapturePolicy] | None = None) -> list[dict[str, Any]]:
        """Bump each device's sequence number, sign its desired document and publish it retained.

        `shadow` (model, version): a candidate the device installs beside the active model and mirrors
        a sample of requests to (shadow rollouts); a document without it removes any shadow.
        `capture`: device id -> its data capture policy (fleet/capture.py); None switches capture off.
        Returns the published documents as dicts (`Desired.to_dict()`).
        """
        docs = []
        with self.engine.begin() as conn:
            for device_id in device_ids:
                seq = _seq(conn.execute(select(db.devices.c.desired_seq).where(db.devices.c.id == device_id)).scalar()) + 1
                conn.execute(update(db.devices).where(db.devices.c.id == device_id)
                             .values(desired_seq=seq, desired_model=model, desired_version=version))
                docs.append(self.desired_document(device_id, seq, model, version, shadow,
                                                  None if capture is None else capture(device_id)))
        for doc in docs:
            publish(self.topics.device(doc.device_id, "desired"), doc.sign(self.sign_key), True)
        return [doc.to_dict() for doc in docs]

    validity_s = 24 * 3600.0  # desired documents expire after this; fleet/freshness.py re-signs them before

    def desired_document(self, device_id: str, seq: int, model: str, version: str,
                         shadow: tuple[str, str] | None = None, capture: CapturePolicy | None = None) -> Desired:
        now = time.time()
        return Desired(device_id, seq, **self._locations(model, version), issued_at=now,
                       shadow=None if shadow is None else ShadowSpec(**self._locations(*shadow)),
                       expires_at=now + self.validity_s, capture=capture)

    def _locations(self, model: str, version: str) -> dict[str, str]:
        base = f"{self.public_url}/api/v1"
        return {"model": model, "version": version,
                "manifest_url": f"{base}/models/{model}/{version}/manifest.json",
                "signature_url": f"{base}/models/{model}/{version}/manifest.sig",
                "blob_url": f"{base}/blobs/"}

    def select(self, selector: dict[str, str]) -> list[str]:
        return [d["id"] for d in self.list(tag=selector)]


def _seq(value: Any) -> int:
    """The fleet's issued counter as stored; a value an older version let a forged report set
    (or garbage) restarts the count at 0 rather than failing every assign."""
    if type(value) is int and 0 <= value < SEQ_CEILING:
        return value
    if value:
        log.warning("stored desired_seq %r is out of range; counting from 0", value)
    return 0


# -- reading device rows that may not be what this version writes ------------------------------------
def device_row(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A devices row with every field of the type readers expect (odd values become None / empty);
    None when even its id is unusable."""
    raw.pop("credentials_hash", None)
    if not isinstance(raw.get("id"), str):
        return None
    row = dict(raw)
    tags = db.load_json(raw.get("tags"))
    row["tags"] = {k: v for k, v in tags.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(tags, dict) else {}
    reported = db.load_json(raw.get("reported"))
    if isinstance(reported, dict) and not isinstance(reported.get("shadow"), (dict, type(None))):
        reported = {**reported, "shadow": None}
    row["reported"] = reported if isinstance(reported, dict) else None
    backends = db.load_json(raw.get("backends"))
    row["backends"] = [b for b in backends if isinstance(b, str)] if isinstance(backends, list) else None
    for key in ("arch", "model", "version", "state", "error", "desired_model", "desired_version"):
        if not isinstance(row.get(key), str):
            row[key] = None
    row["online"] = bool(row.get("online")) if isinstance(row.get("online"), (bool, int)) else False
    for key in ("first_seen", "last_seen"):
        v = row.get(key)
        row[key] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else 0.0
    row["desired_seq"] = row["desired_seq"] if type(row.get("desired_seq")) is int else 0
    return row
