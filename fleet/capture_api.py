"""REST API of data capture, mounted by `edgeml.fleet.api.create_app`.

POST /api/v1/capture/{device_id}   a device uploads a batch (its own bearer token, fleet/capture.py)
GET  /api/v1/capture/rows          captured rows of a model (operator token), paged by id
GET  /api/v1/capture/stats         stored rows and ingest counters (operator token)
DELETE /api/v1/capture/{device_id} remove every captured row of a device (operator token)

Errors are EdgeMLErrors: the app's one handler answers {"error": ...} with the status of their reason.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from edgeml.errors import EdgeMLError, UsageError
from edgeml.messages.capture import MAX_PER_HOUR, CapturePolicy
from edgeml.protocol import valid_device_id

from .capture import DEFAULT_MAX_PER_HOUR, DEFAULT_RETENTION_S, MAX_PAGE, MAX_UPLOAD_BYTES, CaptureRequest, CaptureStore

TOO_LARGE = "too_large"


class CaptureBody(BaseModel):
    """The `capture` member of an assignment or rollout: off when absent."""

    rate: float = Field(description="fraction of requests captured, (0, 1]")
    max_per_hour: int | None = Field(DEFAULT_MAX_PER_HOUR, description="captured requests per device and hour")
    exclude: list[str] = Field(default_factory=list, description="input or tabular column names never captured")

    def check(self) -> "CaptureBody":
        """Itself, or a UsageError (422) for a rate or cap out of range, before anything is stored or published."""
        if not 0 < self.rate <= 1 or (self.max_per_hour is not None and not 1 <= self.max_per_hour <= MAX_PER_HOUR):
            raise UsageError(f"capture: rate must be in (0, 1] and max_per_hour in [1, {MAX_PER_HOUR}]")
        return self

    def policies(self, store: CaptureStore) -> Callable[[str], CapturePolicy]:
        """device id -> its policy."""
        self.check()
        request = CaptureRequest(self.rate, self.max_per_hour, tuple(self.exclude))
        return lambda device_id: store.policy(device_id, request)


def capture_store(service: Any) -> CaptureStore:
    """The fleet's capture store (built from its database, signing key and `--capture-retention`), retention on."""
    retention = float(service.config.extra.get("capture_retention_s") or DEFAULT_RETENTION_S)
    return CaptureStore(service.engine, service.devices.sign_key, service.devices.public_url, retention).start()


def capture_router(store: CaptureStore, auth: Callable[..., None]) -> APIRouter:
    router = APIRouter(prefix="/api/v1/capture", tags=["capture"])

    @router.post("/{device_id}")
    async def upload(device_id: str, request: Request) -> dict[str, Any]:
        if not valid_device_id(device_id) or not store.authorized(device_id, request.headers.get("authorization")):
            store.count("rejected_unauthorized")
            raise EdgeMLError("capture upload needs the device's capture token (from its desired document)",
                              reason="unauthorized")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            store.count("rejected_too_large")
            raise EdgeMLError(f"capture batch larger than {MAX_UPLOAD_BYTES} bytes", reason=TOO_LARGE)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UPLOAD_BYTES:
                store.count("rejected_too_large")
                raise EdgeMLError(f"capture batch larger than {MAX_UPLOAD_BYTES} bytes", reason=TOO_LARGE)
        return {"stored": store.ingest(device_id, bytes(body))}

    @router.get("/rows", dependencies=[Depends(auth)])
    def rows(model: str, version: str | None = None, since: float | None = Query(None, description="epoch seconds"),
             after: int = 0, limit: int = MAX_PAGE) -> dict[str, Any]:
        found = store.rows(model, version, since, after, limit)
        return {"rows": found, "next": found[-1]["id"] if len(found) == min(max(1, limit), MAX_PAGE) else None}

    @router.get("/stats", dependencies=[Depends(auth)])
    def stats() -> dict[str, Any]:
        return store.stats()

    @router.delete("/{device_id}", dependencies=[Depends(auth)])
    def delete(device_id: str) -> dict[str, Any]:
        return {"device": device_id, "deleted": store.delete_device(device_id)}

    return router
