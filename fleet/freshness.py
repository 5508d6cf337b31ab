"""Freshness of desired documents (TUF-style timestamps): every document expires, the fleet re-signs it before.

Devices refuse a desired document without an expiry or past it (a frozen or replayed feed), so the fleet
must keep every retained document fresh. Each signed desired document the fleet publishes is recorded
here (FleetService.publish calls `record`); a background loop re-signs every document that would
expire within half its validity and republishes it, retained.

Re-signing keeps the sequence number and the content and only renews `issued_at`/`expires_at`: a
device takes a re-signed document of its applied sequence number as "still current" and does not
reinstall. A new sequence number would mean a new assignment (and would defeat replay detection of
genuinely older documents). While the fleet is down for longer than the validity, devices keep
serving and report themselves stale; the first tick after a restart re-signs the expired documents.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import BigInteger, Column, Float, String, Table, Text, select, update
from sqlalchemy.engine import Engine

from edgeml.errors import EdgeMLError
from edgeml.messages import Desired
from edgeml.protocol import ProtocolError, Topics, canonical_json, verify_document

from . import db
from .background import Background

log = logging.getLogger("edgeml.fleet.freshness")

DEFAULT_VALIDITY_S = 24 * 3600.0
MIN_VALIDITY_S = 2.0

Publish = Callable[[str, bytes, bool], None]  # topic, payload, retain

desired_documents = Table(
    "desired_documents", db.metadata,
    Column("device_id", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("document", Text, nullable=False),  # the unsigned document (canonical JSON) last published
    Column("expires_at", Float, nullable=False, index=True),
)


class FreshnessKeeper:
    """Records the desired documents the fleet publishes and re-signs them before they expire."""

    def __init__(self, engine: Engine, topics: Topics, sign_key: Ed25519PrivateKey, publish: Publish,
                 validity_s: float = DEFAULT_VALIDITY_S) -> None:
        if validity_s < MIN_VALIDITY_S:
            raise EdgeMLError(f"desired documents must be valid for at least {MIN_VALIDITY_S:g} s", reason="usage")
        self.engine, self.topics, self.sign_key, self.publish = engine, topics, sign_key, publish
        self.validity_s = validity_s
        self.check_s = min(60.0, validity_s / 8)  # a tick every eighth of the validity (at most a minute)
        self._stop = threading.Event()
        self._background = Background("desired-freshness", self._run, self._stop)

    # -- recording (FleetService.publish) --------------------------------------------------------
    def record(self, topic: str, payload: bytes) -> None:
        """Remember a retained desired document the fleet published (other topics are ignored)."""
        try:
            device_id, kind = self.topics.parse(topic)
            if kind != "desired" or not payload:
                return
            doc = Desired.parse(verify_document(payload, None))  # our own document: parsed, not re-verified
        except ProtocolError:
            return
        if doc.expires_at is None:
            return
        values = {"seq": doc.seq, "document": canonical_json(doc.to_dict()).decode(), "expires_at": doc.expires_at}
        with self.engine.begin() as conn:
            found = conn.execute(select(desired_documents.c.device_id)
                                 .where(desired_documents.c.device_id == device_id)).first()
            if found is None:
                conn.execute(desired_documents.insert().values(device_id=device_id, **values))
            else:
                conn.execute(update(desired_documents).where(desired_documents.c.device_id == device_id).values(**values))

    # -- re-signing ------------------------------------------------------------------------------
    def renew_due(self, now: float | None = None) -> int:
        """Re-sign and republish every document expiring within half the validity; returns how many."""
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            rows = conn.execute(select(desired_documents)
                                .where(desired_documents.c.expires_at < now + self.validity_s / 2)).mappings().all()
        renewed = 0
        for row in rows:
            try:
                doc = Desired.parse(row["document"])
            except ProtocolError:
                log.error("stored desired document of %s does not parse; not renewed", row["device_id"])
                continue
            fresh = dataclasses.replace(doc, issued_at=now, expires_at=now + self.validity_s)
            self.publish(self.topics.device(doc.device_id, "desired"), fresh.sign(self.sign_key), True)
            renewed += 1
        return renewed

    def start(self) -> "FreshnessKeeper":
        self._background.start()
        return self

    def stop(self) -> None:
        self._background.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.renew_due()
                if n:
                    log.info("re-signed %d desired document(s) before they expire", n)
            except Exception:  # the broker or the database away: try again next tick
                log.exception("renewing desired documents failed; retrying in %.0f s", self.check_s)
            self._stop.wait(self.check_s)
