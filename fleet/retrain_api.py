"""REST API of retrain policies (fleet/retrain_policy.py), mounted by `edgeml.fleet.api.create_app`.

PUT  /api/v1/retrain-policies/{model}         store the model's policy (replaces it)
GET  /api/v1/retrain-policies/{model}         the policy, whether a run is going, the latest runs
POST /api/v1/retrain-policies/{model}/run     run the chain now ({"version": …} optional)
DELETE /api/v1/retrain-policies/{model}       remove the policy (run records stay)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from .retrain_policy import RetrainPolicies, RetrainPolicy


class PolicyBody(BaseModel):
    on: str = Field(description="trigger: drift")
    then: list[str] = Field(description="convert,push[,rollout]")
    run_dir: str = Field(description="run directory (on the fleet host) of the version being replaced")
    since: str | None = Field("7d", description="captured rows within this period")
    pseudo_label: bool = False
    sign_key: str | None = Field(None, description="key (on the fleet host) signing the new bundle")
    waves: str = "5,25,100"
    soak: str = "60s"


class RunBody(BaseModel):
    version: str | None = Field(None, description="the version being replaced [default: rows of every version]")


def retrain_router(policies: RetrainPolicies) -> APIRouter:
    router = APIRouter(prefix="/api/v1/retrain-policies", tags=["retrain"])

    @router.put("/{model}")
    def put(model: str, body: PolicyBody) -> dict[str, Any]:
        return policies.put(RetrainPolicy(model=model, **{**body.model_dump(), "then": tuple(body.then)}))

    @router.get("/{model}")
    def status(model: str) -> dict[str, Any]:
        return policies.status(model)

    @router.delete("/{model}")
    def delete(model: str) -> dict[str, Any]:
        policies.delete(model)
        return {"model": model, "deleted": True}

    @router.post("/{model}/run", status_code=202)
    def run(model: str, body: RunBody | None = None) -> dict[str, Any]:
        return {"model": model, "run": policies.fire(model, "manual", body.version if body else None)}

    return router
