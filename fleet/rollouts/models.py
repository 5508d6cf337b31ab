"""Rollout tables and the typed rollout specification (thresholds, waves, mode) with its validation.

The tables live in the fleet's one MetaData (`edgeml.fleet.db.metadata`), so `db.connect` creates them.
All rollout state is here: a restarted fleet service resumes every running rollout from these rows.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import JSON, Column, Float, Integer, String, Table, Text

from edgeml.errors import EdgeMLError

from .. import db

rollouts = Table(
    "rollouts", db.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("spec", JSON, nullable=False),  # RolloutSpec.to_dict(): selector, waves, soak, gates, on_failure, A/B
    Column("waves", JSON, nullable=False),  # [{index, percent, state, started_at, soak_until}]
    Column("current_wave", Integer, nullable=False, default=0),
    Column("gates", JSON),  # the latest gate evaluation [{name, value, threshold, passed}]
    Column("baseline", JSON),  # the latest numbers of the previous version (kept for the last wave)
    Column("comparison", JSON),  # A/B or shadow comparison, refreshed while the rollout runs
)

rollout_devices = Table(
    "rollout_devices", db.metadata,
    Column("rollout_id", Integer, primary_key=True),
    Column("device_id", String(128), primary_key=True),
    Column("wave", Integer, nullable=False),
    Column("target_version", String(64), nullable=False),  # the rollout's version, or the A/B baseline
    Column("previous_model", String(128)),
    Column("previous_version", String(64)),
    Column("assigned_at", Float, nullable=False),
    Column("rolled_back_at", Float),
)

rollout_decisions = Table(
    "rollout_decisions", db.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, nullable=False, index=True),
    Column("ts", Float, nullable=False),
    Column("action", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("numbers", JSON, nullable=False),
)


class Mode(str, enum.Enum):
    STAGED = "staged"
    AB = "ab"
    SHADOW = "shadow"


class OnFailure(str, enum.Enum):
    ROLLBACK = "rollback"
    PAUSE = "pause"


class State(str, enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


ACTIVE_STATES = (State.RUNNING.value, State.PAUSED.value)


class SpecError(EdgeMLError):
    """A rollout specification that is out of range (the fleet API answers 422)."""

    reason = "invalid_spec"


@dataclass
class Gates:
    max_error_rate: float = 0.01  # errors / requests of the new version's devices
    max_p99_ratio: float = 1.5  # p99 latency new / previous version
    max_install_failures: int = 1  # install_failed events for the rollout's version
    max_drift_psi: float = 0.25  # worst PSI of the new version's live histograms against its reference
    min_reporting: int = 3  # devices with telemetry on the new version before a gate can pass

    def validate(self) -> None:
        if not (0 <= self.max_error_rate <= 1):
            raise SpecError(f"max_error_rate must be in [0, 1], got {self.max_error_rate}")
        if not (self.max_p99_ratio >= 1 and math.isfinite(self.max_p99_ratio)):
            raise SpecError(f"max_p99_ratio must be a finite ratio >= 1, got {self.max_p99_ratio}")
        if self.max_install_failures < 0:
            raise SpecError(f"max_install_failures must be >= 0, got {self.max_install_failures}")
        if not (self.max_drift_psi >= 0 and math.isfinite(self.max_drift_psi)):
            raise SpecError(f"max_drift_psi must be >= 0, got {self.max_drift_psi}")
        if self.min_reporting < 1:
            raise SpecError(f"min_reporting must be >= 1, got {self.min_reporting}")


@dataclass
class RolloutSpec:
    model: str
    version: str
    selector: dict[str, str] = field(default_factory=dict)
    waves: list[float] = field(default_factory=lambda: [5.0, 25.0, 100.0])
    soak_s: float = 60.0
    gates: Gates = field(default_factory=Gates)
    on_failure: OnFailure = OnFailure.ROLLBACK
    mode: Mode = Mode.STAGED
    ab_percent: float = 50.0  # A/B: share of the cohort on `version`, the rest on `baseline_version`
    baseline_version: str | None = None
    capture: dict[str, Any] | None = None  # data capture of the rollout's devices (fleet/capture_api.CaptureBody)

    def validate(self) -> None:
        if not self.waves:
            raise SpecError("waves must list at least one percentage, e.g. [5, 25, 100]")
        if any(not (0 < w <= 100) for w in self.waves):
            raise SpecError(f"every wave percentage must be in (0, 100], got {self.waves}")
        if any(b <= a for a, b in zip(self.waves, self.waves[1:])):
            raise SpecError(f"wave percentages must increase, got {self.waves}")
        if not (self.soak_s >= 0 and math.isfinite(self.soak_s)):
            raise SpecError(f"soak_s must be >= 0 seconds, got {self.soak_s}")
        self.gates.validate()
        if self.mode is Mode.AB:
            if not self.baseline_version:
                raise SpecError("mode ab needs baseline_version (the version the rest of the cohort runs)")
            if self.baseline_version == self.version:
                raise SpecError("baseline_version must differ from version")
            if not (0 < self.ab_percent < 100):
                raise SpecError(f"ab_percent must be in (0, 100), got {self.ab_percent}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["on_failure"], d["mode"] = self.on_failure.value, self.mode.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RolloutSpec":
        return cls(model=d["model"], version=d["version"], selector=dict(d.get("selector") or {}),
                   waves=[float(w) for w in d["waves"]], soak_s=float(d["soak_s"]), gates=Gates(**d["gates"]),
                   on_failure=OnFailure(d["on_failure"]), mode=Mode(d["mode"]), ab_percent=float(d["ab_percent"]),
                   baseline_version=d.get("baseline_version"), capture=d.get("capture"))
