"""The fleet dashboard in a real browser (headless Debian chromium through Playwright): login, overview,
device filters, live charts, models, and a staged rollout steered from the page.

One fleet on Mosquitto with 12 simulated lab devices on iris 1.0 (real traffic from a file) and 2 field
devices without a model serves every test of the module; the rollout test runs last.
"""

from __future__ import annotations

import importlib.util
import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest

from dashboard_fixtures import launch_chromium, login, start_simulation
from fleet_fixtures import TOKEN, start_mosquitto, wait_until

pytestmark = pytest.mark.slow
LAB, FIELD = 12, 2
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def fleet_rig(tmp_path_factory, keys):
    from rollout_fixtures import iris_bundle, start_rig, traffic_file

    root = tmp_path_factory.mktemp("dashboard")
    broker = start_mosquitto(root)
    traffic = traffic_file(root)
    rig = start_rig(root, keys, broker.url, iris_bundle(root, keys, "1.0"), devices=LAB, traffic=traffic, tags={"site": "lab"})
    field = start_simulation(broker.url, root, keys, FIELD, {"site": "field"}, "field", traffic)
    try:
        wait_until(lambda: all(rig.fleet.device(a.config.device_id) for a in field.agents), 60, "field devices")
        yield rig
    finally:
        field.stop()
        rig.stop()
        broker.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, fleet_rig):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the abort / roll back confirmations
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))  # an uncaught exception in a page's script
    login(page, fleet_rig.fleet.url, TOKEN)
    yield page
    context.close()
    assert errors == []


def lab_ids(rig) -> list[str]:
    return [a.config.device_id for a in rig.sim.agents]


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


# -- login -------------------------------------------------------------------------------------------------
def test_without_the_token_only_the_login_page_is_served(fleet_rig):
    url = fleet_rig.fleet.url
    for path in ("/dashboard/", "/dashboard/devices", f"/dashboard/devices/{lab_ids(fleet_rig)[0]}", "/dashboard/models",
                 "/dashboard/rollouts"):
        status, _, headers = http(url + path)
        assert status == 303 and headers["location"].startswith("/dashboard/login?next="), (path, status)
        status, _, _ = http(url + path, headers={"Cookie": "edgeml_session=wrong"})
        assert status == 303, path
    status, body, _ = http(url + "/dashboard/login")
    assert status == 200 and 'id="login-form"' in body
    status, body, _ = http(url + "/api/v1/devices")
    assert status == 401 and "token" in json.loads(body)["error"]
    status, body, _ = http(url + f"/api/v1/devices/{lab_ids(fleet_rig)[0]}/timeseries",
                           headers={"Cookie": "edgeml_session=wrong"})
    assert status == 401 and json.loads(body)["error"]
    # The cookie alone does not authorize a state change: a cross-site form cannot add the dashboard's header.
    status, _, _ = http(url + "/api/v1/rollouts/1/pause", "POST", {"Cookie": f"edgeml_session={TOKEN}"})
    assert status == 401
    # The cookie is a signed session id: the master token itself is no session (tests/test_dashboard_auth.py).
    status, _, _ = http(url + "/api/v1/devices", headers={"Cookie": f"edgeml_session={TOKEN}"})
    assert status == 401


def test_login_refuses_a_wrong_token_and_keeps_the_right_one_in_an_httponly_cookie(browser, fleet_rig):
    from playwright.sync_api import expect

    url = fleet_rig.fleet.url
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url + "/dashboard/devices")
        expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
        page.fill("#token", "not-the-token")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("wrong token")
        assert "/dashboard/login" in page.url and context.cookies() == []
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/dashboard/devices")  # back where the user was going
        cookie = next(c for c in context.cookies() if c["name"] == "edgeml_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # out of reach of scripts
        page.click("#logout")
        page.wait_for_url(re.compile(r"/dashboard/login"))
        page.goto(url + "/dashboard/")
        expect(page).to_have_url(re.compile(r"/dashboard/login"))
    finally:
        context.close()


# -- pages -------------------------------------------------------------------------------------------------
def test_overview_shows_devices_online_and_versions_in_use(page, fleet_rig):
    from playwright.sync_api import expect

    page.goto(fleet_rig.fleet.url + "/dashboard/")
    expect(page.locator("#online-count")).to_have_text(str(LAB + FIELD))
    expect(page.locator("#offline-count")).to_have_text("0")
    versions = page.locator("#versions")
    expect(versions.locator('tr[data-key="iris 1.0"]')).to_contain_text(f"{LAB} ({LAB} online)")
    expect(versions.locator('tr[data-key="none"]')).to_contain_text(f"{FIELD} ({FIELD} online)")
    expect(versions.locator('tr[data-key="iris 1.0"] td').nth(2)).to_have_text(re.compile(r"\d+(\.\d+)?/s"))
    expect(page.locator("#rollouts")).to_contain_text("no active rollouts")
    expect(page.locator("#events")).to_contain_text("installed")
    expect(page.locator("#live")).to_have_class(re.compile(r"\bok\b"))


def test_devices_list_filters_by_tag_version_and_state(page, fleet_rig):
    from playwright.sync_api import expect

    page.goto(fleet_rig.fleet.url + "/dashboard/devices")
    rows = page.locator("#device-table tbody tr")
    expect(rows).to_have_count(LAB + FIELD)
    page.fill("#filter-tag", "site=field")
    page.press("#filter-tag", "Enter")
    expect(rows).to_have_count(FIELD)
    expect(rows.first).to_contain_text("site=field")
    assert "tag=site%3Dfield" in page.url  # the filter is in the URL: a link keeps it
    page.fill("#filter-tag", "")
    page.select_option("#filter-version", "1.0")
    expect(rows).to_have_count(LAB)
    expect(page.locator("#device-count")).to_have_text(f"{LAB} devices")
    page.select_option("#filter-version", "")
    page.select_option("#filter-state", "idle")
    expect(rows).to_have_count(FIELD)
    page.fill("#filter-tag", "site=lab")
    page.press("#filter-tag", "Enter")
    expect(page.locator("#device-table")).to_contain_text("no device matches these filters")
    page.goto(fleet_rig.fleet.url + "/dashboard/devices?version=1.0&tag=site%3Dlab")  # filters from a link
    expect(rows).to_have_count(LAB)
    expect(page.locator("#filter-version")).to_have_value("1.0")


def test_device_detail_charts_render_and_update_live(page, fleet_rig):
    from playwright.sync_api import expect

    device = lab_ids(fleet_rig)[0]
    page.goto(fleet_rig.fleet.url + f"/dashboard/devices/{device}")
    expect(page.locator("#device-id")).to_have_text(device)
    charts = page.locator(".chart")
    expect(charts).to_have_count(6)
    for title in ("Requests per second", "Latency p50 / p99 (ms)", "Error rate (%)", "CPU (%)", "Memory, RSS (MiB)"):
        chart = page.locator(f'.chart[data-chart="{title}"]')
        expect(chart.locator("canvas")).to_have_count(1)
        expect(chart).not_to_have_attribute("data-points", re.compile(r"^[0-2]$"))
    drift = page.locator(".chart[data-chart^='Drift']")
    expect(drift.locator(".u-legend")).to_contain_text("input[0]")  # a series per feature
    expect(page.locator("#summary")).to_contain_text("iris 1.0")
    expect(page.locator("#history")).to_contain_text("installed")
    # Live: new telemetry arrives every 0.3 s and the charts take it without a reload.
    before = int(page.locator('.chart[data-chart="Requests per second"]').get_attribute("data-points"))
    page.wait_for_function(
        "n => Number(document.querySelector('.chart[data-chart=\"Requests per second\"]').dataset.points) > n",
        arg=before, timeout=TIMEOUT_MS)
    # The canvas holds a drawn series, not a blank chart.
    assert page.evaluate("""() => {
        const c = document.querySelector('.chart[data-chart="Requests per second"] canvas');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < px.length; i += 4) if (px[i + 2] > 200 && px[i] < 80) return true;  // the blue series
        return false;
    }""")


def test_timeseries_endpoint_gives_a_point_per_message_with_latency_and_drift(fleet_rig):
    device = lab_ids(fleet_rig)[0]
    body = fleet_rig.fleet.get(f"/api/v1/devices/{device}/timeseries?window_s=60")
    points = body["points"]
    assert len(points) >= 5 and points == sorted(points, key=lambda p: p["ts"])
    last = points[-1]
    assert last["version"] == "1.0" and last["request_rate"] > 0 and last["latency_p99_s"] >= last["latency_p50_s"] > 0
    assert last["cpu_percent"] is not None and last["rss_bytes"] > 0
    assert set(body["features"]) >= {"input[0]", "input[3]"} and last["drift"]["input[0]"] >= 0
    assert fleet_rig.fleet.api("GET", "/api/v1/devices/nope/timeseries")[0] == 404
    assert fleet_rig.fleet.api("GET", f"/api/v1/devices/{device}/timeseries?window_s=-1")[0] == 422


def test_models_page_shows_formats_sizes_and_validation(page, fleet_rig):
    from playwright.sync_api import expect

    page.goto(fleet_rig.fleet.url + "/dashboard/models")
    card = page.locator('.version[data-version="1.0"]')
    expect(card).to_contain_text("iris 1.0")
    expect(card).to_contain_text("signed")
    artifact = card.locator('tr[data-key="onnx/fp32"]')
    expect(artifact).to_contain_text("passed")
    expect(artifact).to_contain_text("onnxruntime")
    expect(artifact.locator("td").nth(3)).to_have_text(re.compile(r"\d+(\.\d)? (B|KiB|MiB)"))
    expect(card).to_contain_text("input float32 [?×4]")
    expect(card).to_contain_text(f"{LAB} devices")


def test_trailing_drift_window_compares_summed_histograms_with_the_reference():
    from edgeml.fleet.dashboard.timeseries import device_timeseries
    from edgeml.fleet.drift import psi

    reference = {"features": [{"feature": "x", "counts": [50, 50], "kind": "numeric"}]}

    def row(ts: float, counts: list[int]) -> dict:
        payload = {"ts": ts, "interval_s": 1.0, "requests": sum(counts), "errors": 0, "features": {"x": counts},
                   "latency": {"buckets": [0.001, 0.01], "counts": [sum(counts), 0, 0]}}
        return {"device_id": "d", "model": "m", "version": "1", "received_at": ts, "payload": payload}

    rows = [row(0, [20, 0]), row(1, [0, 20]), row(2, [0, 20]), row(3, [20, 20]), row(4, [5, 5])]
    out = device_timeseries(rows, lambda m, v: {"reference": reference}, drift_window_s=2.5)
    got = [p["drift"].get("x") for p in out["points"]]
    # window (t-2.5, t]; the first point has fewer than MIN_SAMPLES samples: no value rather than noise
    want = [None] + [round(psi([50, 50], c), 5) for c in ([20, 20], [20, 40], [20, 60], [25, 45])]
    assert got[0] is None and np.allclose(got[1:], want[1:]) and out["features"] == ["x"]
    assert out["points"][0]["latency_p99_s"] <= 0.001 and out["points"][0]["request_rate"] == 20


# -- rollouts (needs the rollout engine: edgeml.fleet.rollouts) --------------------------------------------
HAS_ROLLOUTS = importlib.util.find_spec("edgeml.fleet.rollouts") is not None


@pytest.mark.skipif(not HAS_ROLLOUTS, reason="the rollout engine (edgeml.fleet.rollouts) is not installed")
def test_rollout_page_steers_a_staged_rollout_and_shows_an_automatic_rollback(page, fleet_rig, tmp_path, keys):
    from playwright.sync_api import expect

    from rollout_fixtures import FAST_GATES, iris_bundle

    rig, url = fleet_rig, fleet_rig.fleet.url
    page.goto(url + "/dashboard/rollouts")
    expect(page.locator("#rollout-list")).to_contain_text("no rollouts yet")
    rig.push(iris_bundle(tmp_path, keys, "2.0", seed=1))
    rig.push(iris_bundle(tmp_path, keys, "3.0", seed=2, extra_features=2))  # passes its smoke test, fails real traffic

    # Started from the page's form; a spec the server refuses shows its reason and starts nothing.
    page.click("#start-rollout summary")
    page.select_option("#new-version", "2.0")
    page.fill("#new-selector", "site=lab")
    page.fill("#new-waves", "60, 25")
    page.click("#new-submit")
    expect(page.locator("#new-error")).to_contain_text("wave percentages must increase")
    assert rig.fleet.get("/api/v1/rollouts") == []
    # A good version, wave by wave: watch the first wave pass in the page, pause it with the button, resume.
    # (p99 of a tiny model is tens of microseconds on this shared machine: the good version's latency gate is loose)
    page.fill("#new-waves", "25, 60, 100")
    page.fill("#new-soak", "4")
    for name, value in {**FAST_GATES, "max_p99_ratio": 20}.items():
        page.fill(f"#gate-{name}", str(value))
    page.click("#new-submit")
    expect(page.locator("#action-result")).to_contain_text("started rollout")
    good = rig.fleet.get("/api/v1/rollouts")[0]
    assert (good["version"], good["selector"], good["soak_s"]) == ("2.0", {"site": "lab"}, 4)
    head = page.locator(".rollout-head")
    expect(head).to_have_attribute("data-rollout", str(good["id"]))
    first_wave = page.locator('#waves tr[data-key="0"]')
    expect(first_wave).to_contain_text("soaking")
    expect(page.locator('#gates tr[data-key="install_failures"]')).to_be_visible()
    expect(first_wave).to_contain_text("passed")
    page.click("#rollout-pause")
    expect(head).to_have_attribute("data-state", "paused")
    expect(page.locator("#action-result")).to_contain_text("pause: rollout is now paused")
    assert rig.rollout(good["id"])["state"] == "paused"
    expect(page.locator("#rollout-pause")).to_be_disabled()
    expect(page.locator("#decisions")).to_contain_text("pause")
    page.click("#rollout-resume")
    expect(head).to_have_attribute("data-state", "completed", timeout=90_000)
    expect(page.locator("#rollout-progress")).to_have_text(f"{LAB} of {LAB} installed")
    assert rig.on("2.0", lab_ids(rig))
    # A stale action (a page that still offers Resume) is refused with the server's reason and changes nothing.
    expect(page.locator("#rollout-resume")).to_be_disabled()
    page.evaluate("() => { const b = document.querySelector('#rollout-resume'); b.disabled = false; b.click(); }")
    expect(page.locator("#action-result")).to_contain_text("resume refused:")
    assert rig.rollout(good["id"])["state"] == "completed"

    # A faulty version: its first wave fails the error-rate gate and every touched device rolls back by itself.
    status, bad = rig.start("3.0", selector={"site": "lab"}, waves=[25, 100], soak_s=2, gates=dict(FAST_GATES))
    assert status == 201, bad
    page.click(f'#rollout-list tr[data-key="{bad["id"]}"] a')  # the page stays on the rollout it was showing
    expect(head).to_have_attribute("data-rollout", str(bad["id"]))
    expect(head).to_have_attribute("data-state", "rolled_back", timeout=90_000)
    expect(page.locator('#gates tr[data-key="error_rate"]')).to_contain_text("failed")
    expect(page.locator("#decisions")).to_contain_text("rollback")
    expect(page.locator('#waves tr[data-key="1"]')).to_contain_text("pending")  # never reached wave 2
    wait_until(lambda: rig.on("2.0", lab_ids(rig)), 60, "every lab device back on 2.0")
    # The list keeps both rollouts; the overview has no active one left.
    expect(page.locator("#rollout-list tbody tr")).to_have_count(2)
    page.goto(url + "/dashboard/")
    expect(page.locator("#rollout-count")).to_have_text("0")
