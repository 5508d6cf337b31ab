"""The fleet database (SQLAlchemy Core): SQLite by default, Postgres through a URL.

Every table joins the one `metadata` where it is defined: the core tables here, the rollout tables in
rollouts/models.py (which imports this module, never the reverse). `connect` creates every table
registered by then, so the caller imports the modules whose tables it uses first (fleet/service.py
imports the rollout engine at module level).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, create_engine, event)
from sqlalchemy.engine import Engine

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
    Column("payload", Text, nullable=False),  # the message as received (validated JSON): never re-encoded
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False, index=True),
    Column("received_at", Float, nullable=False),
    Column("event", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
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
    return engine
