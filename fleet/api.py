"""The fleet's REST API (FastAPI): bearer-token auth, JSON errors, OpenAPI at /openapi.json.

Handlers and the domain below them raise EdgeMLErrors; one handler answers {"error": message} with the
status HTTP_STATUS gives the error's reason (unknown reasons: 500, the fleet's fault, not the caller's).

Manifests, signatures and blobs are readable without the token: they are content-addressed and signed,
and devices fetch them with nothing but the desired document (decision recorded in docs/fleet.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from edgeml.errors import EdgeMLError, NotFoundError, UsageError

from .dashboard.routes import dashboard_router
from .dashboard.session import Gate, Throttled
from .capture_api import CaptureBody, capture_router, capture_store
from .retrain_api import retrain_router
from .provision import provision_device
from .registry import TOO_LARGE
from .rollouts.api import rollouts_router
from .service import FleetService

# The one map from an error's reason to the HTTP status the API answers with.
HTTP_STATUS: dict[str, int] = {
    "usage": 422,  # a request that does not make sense
    "invalid_spec": 422,  # a rollout specification out of range
    "bad_input": 400,
    "bad_bundle": 400,
    "integrity": 400,
    "bad_key": 400,
    "unauthorized": 401,
    "throttled": 429,  # too many failed logins from one client (Retry-After says when to try again)
    "not_found": 404,
    "conflict": 409,
    "exists": 409,
    TOO_LARGE: 413,
}


def status_for(error: EdgeMLError) -> int:
    """The HTTP status of an error: its reason's entry in HTTP_STATUS, else 500."""
    return HTTP_STATUS.get(error.reason, 500)


class AssignRequest(BaseModel):
    model: str
    version: str
    device: str | None = None
    selector: dict[str, str] | None = Field(default=None, description="tags every chosen device must have")
    capture: CaptureBody | None = Field(default=None, description="data capture policy (off when absent)")


def create_app(service: FleetService) -> FastAPI:
    app = FastAPI(title="edgeml fleet", version="1", description="Registry, devices, assignments and telemetry of an edgeml fleet.")
    gate = Gate(service.config.token)  # bearer token or a dashboard session; throttles wrong tokens
    capture = capture_store(service)  # captured requests: fleet/capture.py

    def auth(request: Request) -> None:
        gate.require(request)

    @app.exception_handler(EdgeMLError)
    async def edgeml_error(_request: Request, exc: EdgeMLError) -> JSONResponse:
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, Throttled):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"error": exc.message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)  # FastAPI's own (unknown route, wrong method)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers={"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", []))
        return JSONResponse({"error": f"invalid request: {where}: {first.get('msg', 'bad value')}"}, status_code=422)

    @app.get("/api/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "mqtt_connected": bool(service.bus and service.bus.connected)}

    @app.get("/api/v1/broker", dependencies=[Depends(auth)])
    def broker() -> dict[str, Any]:
        return {"url": service.broker_url, "prefix": service.topics.prefix, "mqtt5": bool(service.bus and service.bus.v5),
                # the embedded broker admits only provisioned devices (POST /api/v1/devices/ID/provision)
                "provisioned_login": bool(getattr(service, "embedded_auth", False)),
                "fleet_public_key": Path(service.public_key_path).read_text()}

    @app.post("/api/v1/models", status_code=201, dependencies=[Depends(auth)])
    async def push(request: Request) -> dict[str, Any]:
        data = await request.body()
        r = service.registry.push_tar(data)
        return {"name": r.name, "version": r.version, "artifacts": r.artifacts, "signature_verified": r.signature_verified}

    @app.get("/api/v1/models", dependencies=[Depends(auth)])
    def models() -> list[dict[str, Any]]:
        return service.registry.list()

    @app.get("/api/v1/models/{name}/{version}", dependencies=[Depends(auth)])
    def model(name: str, version: str) -> dict[str, Any]:
        return _model_or_404(service, name, version)

    @app.get("/api/v1/models/{name}/{version}/manifest.json")
    def manifest(name: str, version: str) -> Response:
        return _blob(service, _model_or_404(service, name, version)["manifest_blob"], "application/json")

    @app.get("/api/v1/models/{name}/{version}/manifest.sig")
    def signature(name: str, version: str) -> Response:
        blob = _model_or_404(service, name, version)["signature_blob"]
        if blob is None:
            raise NotFoundError(f"{name} {version} is not signed")
        return _blob(service, blob, "text/plain")

    @app.get("/api/v1/blobs/{digest}")
    def blob(digest: str) -> Response:
        return _blob(service, digest, "application/octet-stream")

    @app.get("/api/v1/devices", dependencies=[Depends(auth)])
    def devices(tag: list[str] | None = Query(None, description="k=v; repeatable"), version: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        tags = dict(t.split("=", 1) for t in tag or [] if "=" in t)
        return service.devices_with_stats(tag=tags or None, version=version, state=state)

    @app.get("/api/v1/devices/{device_id}", dependencies=[Depends(auth)])
    def device(device_id: str) -> dict[str, Any]:
        found = service.device_detail(device_id)
        if found is None:
            raise NotFoundError(f"unknown device {device_id!r}")
        return found

    @app.post("/api/v1/assign", dependencies=[Depends(auth)])
    def assign(req: AssignRequest) -> dict[str, Any]:
        if (req.device is None) == (req.selector is None):
            raise UsageError("give exactly one of device or selector")
        if service.registry.get(req.model, req.version) is None:
            raise NotFoundError(f"model {req.model} {req.version} is not registered; push it first")
        if req.device is not None:
            if service.devices.get(req.device) is None:
                raise NotFoundError(f"unknown device {req.device!r}")
            ids = [req.device]
        else:
            ids = service.devices.select(req.selector or {})
            if not ids:
                raise NotFoundError(f"no device matches {req.selector}")
        policies = None if req.capture is None else req.capture.policies(capture)
        docs = service.devices.assign(ids, req.model, req.version, service.publish, capture=policies)
        return {"assigned": [{"device": d["device_id"], "seq": d["seq"]} for d in docs]}

    @app.post("/api/v1/devices/{device_id}/provision", dependencies=[Depends(auth)])
    def provision(device_id: str) -> dict[str, Any]:
        return provision_device(service, device_id)  # checks the id (UsageError: 422)

    @app.get("/api/v1/versions", dependencies=[Depends(auth)])
    def versions() -> list[dict[str, Any]]:
        return service.version_stats()

    @app.get("/api/v1/events", dependencies=[Depends(auth)])
    def events(device: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return service.events(device, min(limit, 1000))

    @app.get("/api/v1/stats", dependencies=[Depends(auth)])
    def stats() -> dict[str, Any]:
        return service.ingest_stats()

    app.include_router(dashboard_router(service, gate, auth))

    app.include_router(rollouts_router(service.rollouts), dependencies=[Depends(auth)])
    app.include_router(capture_router(capture, auth))  # device uploads use their own token
    app.include_router(retrain_router(service.retrain), dependencies=[Depends(auth)])  # fleet/retrain_policy.py
    service.rollouts.capture_policies = lambda body: CaptureBody(**body).policies(capture)  # rollouts --capture
    return app


def _model_or_404(service: FleetService, name: str, version: str) -> dict[str, Any]:
    found = service.registry.get(name, version)
    if found is None:
        raise NotFoundError(f"model {name} {version} is not registered")
    return found


def _blob(service: FleetService, digest: str, media_type: str) -> Response:
    path = service.store.path(digest)
    if path is None:
        raise NotFoundError(f"no blob {digest}")
    return FileResponse(path, media_type=media_type)  # Starlette's FileResponse answers Range requests
