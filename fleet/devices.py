"""Device registry: self-registration on first contact, status, reported state, and desired assignments."""

from __future__ import annotations

import time
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from edgeml.messages import Desired, Reported, ShadowSpec, Status
from edgeml.protocol import Topics

from . import db

Publish = Callable[[str, bytes, bool], None]  # topic, payload, retain


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

    def on_reported(self, device_id: str, doc: Reported) -> tuple[str, str] | None:
        """Store the reported state; return (model, version) when the desired document must be reissued.

        A device that applied a sequence number this fleet never issued (the fleet's database was
        reset, or another fleet wrote to its topic) would refuse every document the fleet sends next
        as a replay. The fleet then moves its counter past the device's and, if the device is not on
        the desired version, reissues it. A failed install of the fleet's own latest document is not
        retried this way (same sequence number): retries are an operator's or a rollout's decision.
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
            if row is None or seq <= (row.desired_seq or 0):
                return None
            conn.execute(update(db.devices).where(db.devices.c.id == device_id).values(desired_seq=seq))
        if row.desired_model and (doc.model, doc.version) != (row.desired_model, row.desired_version):
            return row.desired_model, row.desired_version
        return None

    def list(self, tag: dict[str, str] | None = None, version: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(db.devices).order_by(db.devices.c.id)).mappings()]
        out = []
        for r in rows:
            r.pop("credentials_hash", None)
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
            row = conn.execute(select(db.devices).where(db.devices.c.id == device_id)).mappings().first()
        if row is None:
            return None
        row = dict(row)
        row.pop("credentials_hash", None)
        return row

    def assign(self, device_ids: list[str], model: str, version: str, publish: Publish,
               shadow: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Bump each device's sequence number, sign its desired document and publish it retained.

        `shadow` (model, version): a candidate the device installs beside the active model and mirrors
        a sample of requests to (shadow rollouts); a document without it removes any shadow.
        Returns the published documents as dicts (`Desired.to_dict()`).
        """
        docs = []
        with self.engine.begin() as conn:
            for device_id in device_ids:
                seq = (conn.execute(select(db.devices.c.desired_seq).where(db.devices.c.id == device_id)).scalar() or 0) + 1
                conn.execute(update(db.devices).where(db.devices.c.id == device_id)
                             .values(desired_seq=seq, desired_model=model, desired_version=version))
                docs.append(self.desired_document(device_id, seq, model, version, shadow))
        for doc in docs:
            publish(self.topics.device(doc.device_id, "desired"), doc.sign(self.sign_key), True)
        return [doc.to_dict() for doc in docs]

    def desired_document(self, device_id: str, seq: int, model: str, version: str,
                         shadow: tuple[str, str] | None = None) -> Desired:
        return Desired(device_id, seq, **self._locations(model, version), issued_at=time.time(),
                       shadow=None if shadow is None else ShadowSpec(**self._locations(*shadow)))

    def _locations(self, model: str, version: str) -> dict[str, str]:
        base = f"{self.public_url}/api/v1"
        return {"model": model, "version": version,
                "manifest_url": f"{base}/models/{model}/{version}/manifest.json",
                "signature_url": f"{base}/models/{model}/{version}/manifest.sig",
                "blob_url": f"{base}/blobs/"}

    def select(self, selector: dict[str, str]) -> list[str]:
        return [d["id"] for d in self.list(tag=selector)]
