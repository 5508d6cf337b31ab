"""The dashboard's login against a real `edgeml fleet serve` over plain HTTP (issue 13, finding 10): login
throttling per client, a signed expiring session id in the cookie (never the master token), logout
revokes it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from fleet_fixtures import TOKEN, start_fleet

COOKIE = "edgeml_session"


def http(url: str, method: str = "GET", body: dict | None = None, headers: dict[str, str] | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={**(headers or {}),
                                                                         **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"null"), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


def login(url: str, token: str):
    return http(url + "/dashboard/login", "POST", {"token": token}, {"X-EdgeML-Dashboard": "1"})


def session_of(headers) -> tuple[str, str]:
    header = next(h for h in headers.get_all("set-cookie") if h.startswith(COOKIE + "="))
    return header.split(";", 1)[0].split("=", 1)[1], header


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, keys):
    root = tmp_path_factory.mktemp("dashauth")
    fleet = start_fleet(root, keys)
    yield fleet
    fleet.proc.terminate()


def test_the_session_cookie_is_a_signed_session_id_revoked_by_logout(fleet):
    status, _, headers = login(fleet.url, TOKEN)
    assert status == 200
    cookie, header = session_of(headers)
    attrs = header.lower()
    assert TOKEN not in cookie and "httponly" in attrs and "samesite=strict" in attrs and "max-age=" in attrs
    as_cookie = {"Cookie": f"{COOKIE}={cookie}"}
    assert http(fleet.url + "/api/v1/devices", headers=as_cookie)[0] == 200
    # The master token is no session; a forged or re-signed-by-guess id is refused.
    assert http(fleet.url + "/api/v1/devices", headers={"Cookie": f"{COOKIE}={TOKEN}"})[0] == 401
    sid, expiry, mac = cookie.split(".")
    for forged in (f"{sid}.{int(expiry) + 10**6}.{mac}", f"{sid}x.{expiry}.{mac}", f"{sid}.{expiry}.{'0' * len(mac)}"):
        assert http(fleet.url + "/api/v1/devices", headers={"Cookie": f"{COOKIE}={forged}"})[0] == 401
    # A state change by cookie alone needs the dashboard's header (CSRF).
    assert http(fleet.url + "/api/v1/rollouts/1/pause", "POST", headers=as_cookie)[0] == 401
    # Logout revokes the session on the server: the same cookie, kept by an attacker, no longer works.
    status, _, headers = http(fleet.url + "/dashboard/logout", "POST", headers={**as_cookie, "X-EdgeML-Dashboard": "1"})
    assert status == 200
    status, body, _ = http(fleet.url + "/api/v1/devices", headers=as_cookie)
    assert status == 401 and body["error"]
    assert http(fleet.url + "/api/v1/devices", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_sessions_expire_and_unknown_ids_are_refused():
    from edgeml.fleet.dashboard.session import Sessions

    sessions = Sessions(ttl_s=60)
    cookie = sessions.issue(now=1000.0)
    assert sessions.valid(cookie, now=1059.0) and not sessions.valid(cookie, now=1060.0)
    assert not sessions.valid(cookie, now=1001.0)  # once expired it is forgotten, not revived
    other = Sessions(ttl_s=60)  # another server secret (a restarted fleet)
    assert not other.valid(sessions.issue())


@pytest.mark.parametrize("route", ["login", "bearer"])
def test_wrong_tokens_are_throttled_per_client_with_429_and_retry_after(tmp_path, keys, route):
    # A fleet of its own: the throttle locks this client (127.0.0.1) out of it for a minute.
    fleet = start_fleet(tmp_path, keys)
    try:
        def attempt(token: str):
            if route == "login":
                return login(fleet.url, token)
            return http(fleet.url + "/api/v1/models", headers={"Authorization": f"Bearer {token}"})

        assert [attempt(f"guess-{i}")[0] for i in range(5)] == [401] * 5
        status, body, headers = attempt("guess-6")
        assert status == 429 and "too many failed logins" in body["error"]
        assert 1 <= int(headers["Retry-After"]) <= 60
        # While throttled, even the right token is not checked: guessing gains nothing.
        assert attempt(TOKEN)[0] == 429
        assert "Traceback" not in fleet.proc.text()
    finally:
        fleet.proc.terminate()


def test_throttle_window_slides():
    from edgeml.fleet.dashboard.session import LoginThrottle, Throttled

    throttle = LoginThrottle(max_failures=2, window_s=60)
    throttle.failed("a", now=0.0)
    throttle.failed("a", now=10.0)
    with pytest.raises(Throttled) as exc:
        throttle.check("a", now=20.0)
    assert exc.value.retry_after == 40 and exc.value.reason == "throttled"
    throttle.check("b", now=20.0)  # another client is not affected
    throttle.check("a", now=60.5)  # the first failure left the window
