"""`edgeml fleet simulate`: N real device agents in one process join the fleet, install and report."""

from __future__ import annotations

import pytest

from fleet_fixtures import TOKEN, spawn, start_fleet, wait_until
from test_fleet import assign, bundles, push  # noqa: F401  (fixtures)


@pytest.mark.slow
def test_simulated_devices_register_install_and_send_telemetry(tmp_path, keys, bundles):
    fleet = start_fleet(tmp_path, keys)
    sim = spawn(["fleet", "simulate", "--devices", "5", "--server", fleet.url, "--token", TOKEN, "--tags", "lab=1",
                 "--telemetry-interval", "0.3", "--rps", "20", "--store", str(tmp_path / "sim"), "--verify-key", str(keys[1])],
                tmp_path / "sim.log", tmp_path)
    try:
        # provisioned devices are listed at once; wait until each has connected and reported its tags
        wait_until(lambda: len(fleet.get("/api/v1/devices?tag=lab=1")) == 5, 60, "5 simulated devices")
        assert push(fleet, bundles[0])[0] == 201
        status, body = assign(fleet, "iris", "1.0", selector={"lab": "1"})
        assert status == 200 and len(body["assigned"]) == 5
        wait_until(lambda: all(d["version"] == "1.0" and d["state"] == "active" for d in fleet.get("/api/v1/devices")), 60, "installs")
        devices = wait_until(lambda: (lambda ds: ds if all(d["telemetry"]["requests"] > 0 for d in ds) else None)(
            fleet.get("/api/v1/devices")), 30, "synthetic traffic in telemetry")
        assert {d["id"] for d in devices} == {f"sim-{i:03d}" for i in range(5)}
        assert all(d["drift"] is not None for d in devices)
    finally:
        sim.terminate()
        fleet.proc.terminate()
