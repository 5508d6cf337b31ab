"""The fleet database (SQLAlchemy Core): SQLite by default, Postgres through a URL.

Every table joins the one `metadata` where it is defined: the core tables here, the rollout tables in
rollouts/models.py (which imports this module, never the reverse). `connect` creates every table
registered by then, so the caller imports the modules whose tables it uses first (fleet/service.py
imports the rollout engine at module level).
"""

from __future__ import annotations

from pathlib import Path

import json
import logging
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, create_engine, event, text, type_coerce)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.sql.elements import ColumnElement

log = logging.getLogger("edgeml.fleet")

metadata = MetaData()

models = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("manifest_blob", String(64), nullable=False),
    Column("signature_blob", String(64)),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("name", "version", name="uq_model_version"),
)

devices = Table(
    "devices", metadata,
    Column("id", String(128), primary_key=True),
    Column("tags", JSON, nullable=False, default=dict),
    Column("arch", String(64)),
    Column("backends", JSON),
    Column("online", Boolean, nullable=False, default=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("model", String(128)),
    Column("version", String(64)),
    Column("state", String(32)),
    Column("error", Text),
    Column("reported", JSON),
    Column("desired_seq", Integer, nullable=False, default=0),
    Column("desired_model", String(128)),
    Column("desired_version", String(64)),
    Column("credentials_hash", Text),
)

telemetry = Table(
    "telemetry", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False, index=True),
    Column("model", String(128)),
    Column("version", String(64)),
    Column("received_at", Float, nullable=False, index=True),
    Column("seq", BigInteger),
    Column("payload", Text, nullable=False),  # the message's canonical JSON (Telemetry.to_json)
)
# Each (device, seq) is stored once: QoS 1 redeliveries and device resends are ignored on insert.
TELEMETRY_UNIQUE = Index("uq_telemetry_device_seq", telemetry.c.device_id, telemetry.c.seq, unique=True)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False, index=True),
    Column("received_at", Float, nullable=False),
    Column("event", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
)

# Captured requests uploaded by devices (fleet/capture.py): inputs/outputs as canonical JSON text.
captured_rows = Table(
    "captured_rows", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False, index=True),
    Column("model", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("received_at", Float, nullable=False, index=True),
    Column("inputs", Text, nullable=False),
    Column("outputs", Text, nullable=False),
    Index("ix_captured_model_version_ts", "model", "version", "ts"),
)


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{(Path(data_dir) / 'fleet.db').absolute()}"


def connect(url: str) -> Engine:
    """Create the engine and the schema of every table on `metadata`. SQLite gets WAL mode so ingest and API reads don't block each other."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    _ensure_unique_telemetry(engine)
    return engine


def _ensure_unique_telemetry(engine: Engine) -> None:
    """Add the (device_id, seq) unique index to a database made by an older version, dropping the
    duplicate rows it may hold first (the oldest copy of each is kept)."""
    try:
        TELEMETRY_UNIQUE.create(engine, checkfirst=True)
        return
    except (IntegrityError, OperationalError, ProgrammingError):
        pass
    with engine.begin() as conn:
        removed = conn.execute(text(f"DELETE FROM {telemetry.name} WHERE id NOT IN "
                                    f"(SELECT MIN(id) FROM {telemetry.name} GROUP BY device_id, seq)")).rowcount
    log.warning("removed %s duplicate telemetry rows (same device and seq) to add the unique index", removed)
    TELEMETRY_UNIQUE.create(engine, checkfirst=True)


# -- reading rows that may not be what this version writes -------------------------------------------
# Read paths must survive rows written by an older version or by hand: JSON columns are read as text
# (a JSON column that does not decode would raise inside SQLAlchemy) and decoded here, None when bad.
def as_text(column: Any) -> ColumnElement[Any]:
    """A JSON column selected as its raw text, labelled with its own name."""
    return type_coerce(column, Text).label(column.name)


def lenient_columns(table: Table) -> list[Any]:
    """Every column of `table`, JSON ones as raw text (decode them with `load_json`)."""
    return [as_text(c) if isinstance(c.type, JSON) else c for c in table.columns]


def load_json(value: Any) -> Any:
    """A JSON column's stored text decoded (values already decoded pass through); None when it does not parse."""
    if value is None or not isinstance(value, (str, bytes)):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None
