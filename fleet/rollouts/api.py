"""REST API of rollouts, mounted by `edgeml.fleet.api.create_app` (behind its token auth).

The engine's refusals are EdgeMLErrors (SpecError, NotFoundError, ConflictError); the app's one
error handler turns their reasons into HTTP statuses (fleet/api.py).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..capture_api import CaptureBody
from .engine import RolloutEngine
from .models import Gates, Mode, OnFailure, RolloutSpec


class GatesBody(BaseModel):
    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5
    max_install_failures: int = 1
    max_drift_psi: float = 0.25
    min_reporting: int = 3


class RolloutBody(BaseModel):
    model: str
    version: str
    selector: dict[str, str] = Field(default_factory=dict, description="tags every targeted device must have")
    waves: list[float] = Field(default_factory=lambda: [5, 25, 100], description="cumulative percentages, increasing, in (0, 100]")
    soak_s: float = 60.0
    gates: GatesBody = Field(default_factory=GatesBody)
    on_failure: Literal["rollback", "pause"] = "rollback"
    mode: Literal["staged", "ab", "shadow"] = "staged"
    ab_percent: float = 50.0
    baseline_version: str | None = None
    capture: CaptureBody | None = Field(default=None, description="data capture policy of the rollout's devices")

    def spec(self) -> RolloutSpec:
        return RolloutSpec(model=self.model, version=self.version, selector=self.selector, waves=self.waves,
                           soak_s=self.soak_s, gates=Gates(**self.gates.model_dump()), on_failure=OnFailure(self.on_failure),
                           mode=Mode(self.mode), ab_percent=self.ab_percent, baseline_version=self.baseline_version,
                           capture=None if self.capture is None else self.capture.check().model_dump())


def rollouts_router(engine: RolloutEngine) -> APIRouter:
    router = APIRouter(prefix="/api/v1/rollouts", tags=["rollouts"])

    @router.post("", status_code=201)
    def start(body: RolloutBody) -> dict[str, Any]:
        return engine.create(body.spec())

    @router.get("")
    def list_rollouts() -> list[dict[str, Any]]:
        return engine.list()

    @router.get("/{rollout_id}")
    def get(rollout_id: int) -> dict[str, Any]:
        return engine.get(rollout_id)

    @router.post("/{rollout_id}/{action}")
    def act(rollout_id: int, action: Literal["pause", "resume", "abort", "rollback"]) -> dict[str, Any]:
        return engine.act(rollout_id, action)

    return router
