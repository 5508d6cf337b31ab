"""The dashboard's routes: its pages, their static files, the login that sets the session cookie, and the
per-device time series the charts draw.

Pages are static shells (templates/page.html) whose JavaScript module (static/js/PAGE.js) fetches the
JSON API every second or two and re-renders; nothing in a page is rendered from data on the server.
Without the fleet token only the login page is served; the pages redirect to it.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any, Callable
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from edgeml.errors import NotFoundError

from ..service import FleetService
from ..telemetry import rows_since
from .session import COOKIE, Gate
from .timeseries import device_timeseries

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
PREFIX = "/dashboard"

# path under /dashboard -> (page module in static/js, title)
PAGES: dict[str, tuple[str, str]] = {
    "/": ("overview", "Overview"),
    "/devices": ("devices", "Devices"),
    "/devices/{device_id}": ("device", "Device"),
    "/models": ("models", "Models"),
    "/rollouts": ("rollouts", "Rollouts"),
}


class Login(BaseModel):
    token: str


def dashboard_router(service: FleetService, gate: Gate, auth: Callable[..., None]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @router.get(PREFIX)
    def bare() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @router.get(f"{PREFIX}/login")
    def login_page() -> Response:
        return _html(_render("login.html", title="Log in", page="login"))

    @router.post(f"{PREFIX}/login")
    def login(body: Login, request: Request) -> Response:
        # Throttled per client; the cookie is a signed session id, never the token (see session.py).
        gate.check_token(request, body.token, "wrong token: use the fleet's --token (EDGEML_FLEET_TOKEN)")
        resp = JSONResponse({"ok": True})
        resp.set_cookie(COOKIE, gate.sessions.issue(), max_age=int(gate.sessions.ttl_s), httponly=True,
                        samesite="strict", path="/", secure=request.url.scheme == "https")
        return resp

    @router.post(f"{PREFIX}/logout")
    def logout(request: Request) -> Response:
        gate.sessions.revoke(request.cookies.get(COOKIE, ""))  # the cookie stops working even if kept
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    def page_route(module: str, title: str) -> Callable[..., Response]:
        def page(request: Request) -> Response:
            if not gate.logged_in(request):
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
                return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
            return _html(_render("page.html", title=title, page=module))
        return page

    for path, (module, title) in PAGES.items():
        router.add_api_route(PREFIX + path, page_route(module, title), methods=["GET"])

    @router.get(PREFIX + "/static/{path:path}")
    def static(path: str) -> Response:
        # Code and styles only (no fleet data), so the login page can use them before a login.
        target = (STATIC / path).resolve()
        if not target.is_relative_to(STATIC.resolve()) or not target.is_file():
            raise NotFoundError(f"no static file {path}")
        return FileResponse(target, headers={"Cache-Control": "no-cache"})

    @router.get("/api/v1/devices/{device_id}/timeseries", dependencies=[Depends(auth)])
    def timeseries(device_id: str, window_s: float = Query(600.0, gt=0, le=86400),
                   drift_window_s: float = Query(60.0, gt=0, le=3600)) -> dict[str, Any]:
        if service.devices.get(device_id) is None:
            raise NotFoundError(f"unknown device {device_id!r}")
        now = time.time()
        rows = rows_since(service.engine, now - window_s - drift_window_s, device_id)
        out = device_timeseries(rows, _manifest_cache(service), drift_window_s)
        out["points"] = [p for p in out["points"] if p["ts"] >= now - window_s]
        return {"device": device_id, "window_s": window_s, "now": now, **out}

    return router


def _manifest_cache(service: FleetService) -> Callable[[str | None, str | None], dict[str, Any] | None]:
    @lru_cache(maxsize=None)
    def manifest(model: str | None, version: str | None) -> dict[str, Any] | None:
        found = service.registry.get(model, version) if model and version else None
        return found and found["manifest"]
    return manifest


@lru_cache(maxsize=None)
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text())


def _render(name: str, **values: str) -> str:
    return _template(name).substitute(values)


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                       "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'"})
