"""The rollout engine's storage: its three tables (rollouts/models.py), read and written in one place.

Every state change and its decision (with the numbers that caused it) are written in one transaction,
so a fleet service killed mid-rollout resumes from these rows.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Engine

from .models import ACTIVE_STATES, RolloutSpec, State, rollout_decisions, rollout_devices, rollouts


class RolloutRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, spec: RolloutSpec, waves: list[dict[str, Any]], reason: str, numbers: dict[str, Any]) -> int:
        """Insert a running rollout and its "start" decision; returns its id."""
        now = time.time()
        with self.engine.begin() as conn:
            rid = conn.execute(rollouts.insert().values(
                model=spec.model, version=spec.version, mode=spec.mode.value, state=State.RUNNING.value,
                created_at=now, updated_at=now, spec=spec.to_dict(), waves=waves, current_wave=0)).inserted_primary_key[0]
            _decide(conn, rid, "start", reason, numbers)
        return int(rid)

    def row(self, rid: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(rollouts).where(rollouts.c.id == rid)).mappings().first()
        return None if found is None else dict(found)

    def rows(self, state: str | None = None) -> list[dict[str, Any]]:
        q = select(rollouts).order_by(rollouts.c.id)
        if state:
            q = q.where(rollouts.c.state == state)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def update(self, rid: int, **values: Any) -> None:
        """Change columns of a rollout without a decision (waves opening, live gate values)."""
        with self.engine.begin() as conn:
            conn.execute(update(rollouts).where(rollouts.c.id == rid).values(**values))

    def record(self, rid: int, action: str, reason: str, numbers: dict[str, Any], **values: Any) -> None:
        """Change columns of a rollout and record the decision that did it, in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(update(rollouts).where(rollouts.c.id == rid).values(updated_at=time.time(), **values))
            _decide(conn, rid, action, reason, numbers)

    def decisions(self, rid: int) -> list[dict[str, Any]]:
        q = select(rollout_decisions).where(rollout_decisions.c.rollout_id == rid).order_by(rollout_decisions.c.id)
        with self.engine.connect() as conn:
            return [{"ts": d["ts"], "action": d["action"], "reason": d["reason"], "numbers": d["numbers"]}
                    for d in conn.execute(q).mappings()]

    def touched(self, rid: int) -> dict[str, dict[str, Any]]:
        """{device id: its rollout_devices record} of every device the rollout assigned."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(rollout_devices).where(rollout_devices.c.rollout_id == rid)).mappings()
            return {r["device_id"]: dict(r) for r in rows}

    def busy(self, exclude: int) -> set[str]:
        """Devices held by another running or paused rollout."""
        q = (select(rollout_devices.c.device_id).join(rollouts, rollouts.c.id == rollout_devices.c.rollout_id)
             .where(rollouts.c.state.in_(ACTIVE_STATES), rollouts.c.id != exclude))
        with self.engine.connect() as conn:
            return set(conn.execute(q).scalars())

    def add_devices(self, records: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(rollout_devices.insert(), records)

    def mark_rolled_back(self, rid: int) -> None:
        """Stamp every device of the rollout not yet rolled back."""
        with self.engine.begin() as conn:
            conn.execute(update(rollout_devices).where(and_(rollout_devices.c.rollout_id == rid,
                                                            rollout_devices.c.rolled_back_at.is_(None)))
                         .values(rolled_back_at=time.time()))


def _decide(conn: Any, rid: int, action: str, reason: str, numbers: dict[str, Any]) -> None:
    conn.execute(rollout_decisions.insert().values(rollout_id=rid, ts=time.time(), action=action, reason=reason,
                                                   numbers=jsonable(numbers)))


def jsonable(value: Any) -> Any:
    """Numbers as plain floats/ints (numpy scalars do not serialise)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
