"""Capture the fleet dashboard's main pages into docs/screenshots/*.png (docs/fleet.md embeds them).

Starts Mosquitto, a fleet service and 16 simulated devices (the real device agent) on iris 1.0 — 12 at
site=lab serving iris rows, 4 at site=field serving shifted rows (drift) — then rolls 2.0 out to the lab
(completes), tries a faulty 3.0 (rolls back by itself), starts a slow rollout of 2.0 in the field (left
soaking), and captures each page with headless Chromium.

    python scripts/screenshots.py [--out docs/screenshots] [--keep]

--keep leaves everything running afterwards and prints the dashboard's URL and token (Ctrl-C stops).
Needs edgeml[all,test], Mosquitto and Debian's chromium (scripts/setup.sh installs them).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the fleet test rig: Mosquitto, fleet service, bundles, simulated devices

from dashboard_fixtures import launch_chromium, login, start_simulation  # noqa: E402
from fleet_fixtures import TOKEN, start_mosquitto, wait_until  # noqa: E402
from rollout_fixtures import FAST_GATES, iris_bundle, start_rig, traffic_file  # noqa: E402

VIEWPORT = {"width": 1440, "height": 900}


def shifted_traffic(root: Path) -> Path:
    """Field traffic: iris rows scaled up, so the field devices drift from the bundle's reference."""
    import numpy as np
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    path = root / "field-traffic.npz"
    np.savez(path, input=(X * 1.25).astype(np.float32))
    return path


def build_fleet(root: Path, stack: contextlib.ExitStack):
    from edgeml.signing import generate_keypair

    keys = generate_keypair(root / "keys")
    broker = start_mosquitto(root)
    stack.callback(broker.stop)
    rig = start_rig(root, keys, broker.url, iris_bundle(root, keys, "1.0"), devices=12, traffic=traffic_file(root),
                    tags={"site": "lab"})
    stack.callback(rig.stop)
    field = start_simulation(broker.url, root, keys, 4, {"site": "field"}, "field", shifted_traffic(root))
    stack.callback(field.stop)
    field_ids = [a.config.device_id for a in field.agents]
    wait_until(lambda: all(rig.fleet.device(d) for d in field_ids), 60, "field devices")
    assert rig.fleet.api("POST", "/api/v1/assign", {"model": "iris", "version": "1.0", "selector": {"site": "field"}})[0] == 200
    wait_until(lambda: all(v == "1.0" for v in field.versions().values()), 60, "field devices on 1.0")
    rig.push(iris_bundle(root, keys, "2.0", seed=1))
    rig.push(iris_bundle(root, keys, "3.0", seed=2, extra_features=2))  # fails on real traffic

    # Latencies here are tens of microseconds on a shared machine: the good version gets a loose p99 gate.
    status, good = rig.start("2.0", selector={"site": "lab"}, waves=[25, 50, 100], soak_s=3,
                             gates={**FAST_GATES, "max_p99_ratio": 20})
    assert status == 201, good
    rig.wait_state(good["id"], ("completed",), 120)
    status, bad = rig.start("3.0", selector={"site": "lab"}, waves=[25, 100], soak_s=2)
    assert status == 201, bad
    rig.wait_state(bad["id"], ("rolled_back",), 120)
    gates = {**FAST_GATES, "max_drift_psi": 5.0, "min_reporting": 1}
    status, slow = rig.start("2.0", selector={"site": "field"}, waves=[50, 100], soak_s=3600, gates=gates)
    assert status == 201, slow
    return rig, {"good": good["id"], "bad": bad["id"], "slow": slow["id"]}


def capture(url: str, out: Path, rig, rollouts: dict[str, int]) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    lab_device = rig.sim.agents[0].config.device_id
    shots = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport=VIEWPORT)
        login(page, url, TOKEN)

        def shot(name: str, path: str, ready) -> None:
            page.goto(url + path)
            ready()
            page.wait_for_timeout(300)  # let the last re-render paint
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            shots.append(target)

        shot("overview", "/dashboard/", lambda: expect(page.locator("#online-count")).to_have_text("16", timeout=30_000))
        shot("devices", "/dashboard/devices", lambda: expect(page.locator("#device-table tbody tr")).to_have_count(16))
        shot("device", f"/dashboard/devices/{lab_device}", lambda: page.wait_for_function(
            "() => [...document.querySelectorAll('.chart')].every(c => Number(c.dataset.points) > 20)", timeout=60_000))
        shot("models", "/dashboard/models", lambda: expect(page.locator('.version[data-version="3.0"]')).to_be_visible())
        shot("rollout-rolled-back", f"/dashboard/rollouts?id={rollouts['bad']}",
             lambda: expect(page.locator(".rollout-head")).to_have_attribute("data-state", "rolled_back"))
        shot("rollout-running", f"/dashboard/rollouts?id={rollouts['slow']}",
             lambda: expect(page.locator('#waves tr[data-key="0"]')).to_contain_text("soaking", timeout=60_000))
        browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--keep", action="store_true", help="keep the fleet running afterwards (Ctrl-C stops)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="edgeml-screens-") as tmp, contextlib.ExitStack() as stack:
        rig, rollouts = build_fleet(Path(tmp), stack)
        for path in capture(rig.fleet.url, args.out, rig, rollouts):
            print(f"wrote {path}", flush=True)
        if args.keep:
            print(f"dashboard: {rig.fleet.url}/dashboard/  token: {TOKEN}  (Ctrl-C stops)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)


if __name__ == "__main__":
    main()
