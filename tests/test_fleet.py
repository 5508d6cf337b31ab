"""Fleet service and device agents as real processes over a real broker (Mosquitto, and the embedded one)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fleet_fixtures import (TOKEN, infer, served_version, start_device, start_fleet, start_mosquitto, wait_until)


def make_bundle(root: Path, keys, version: str, seed: int) -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    from edgeml.convert.options import ConvertOptions, Precision
    from edgeml.convert.pipeline import convert

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = MLPClassifier((8,), max_iter=800, random_state=seed).fit(X, y)
    joblib.dump(model, root / f"iris-{version}.joblib")
    np.savez(root / "iris.npz", input=X, label=y)
    options = ConvertOptions(source=str(root / f"iris-{version}.joblib"), out=root / f"iris-{version}", name="iris",
                             version=version, precisions=[Precision.FP32], calibration=root / "iris.npz",
                             sign_key=keys[0], latency_runs=3)
    return convert(options).bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, keys):
    root = tmp_path_factory.mktemp("fleet-bundles")
    return make_bundle(root, keys, "1.0", 0), make_bundle(root, keys, "2.0", 1)


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory):
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


def push(fleet, bundle: Path) -> tuple[int, dict]:
    from edgeml.fleet.registry import pack_bundle

    return fleet.api("POST", "/api/v1/models", pack_bundle(bundle))


def assign(fleet, model: str, version: str, **target) -> tuple[int, dict]:
    return fleet.api("POST", "/api/v1/assign", {"model": model, "version": version, **target})


def device_state(fleet, device_id: str):
    d = fleet.device(device_id)
    return d and (d["state"], d["version"], d["online"])


X = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


class Traffic:
    """Calls infer on devices in a loop from a thread and counts failures (the no-failed-request check)."""

    def __init__(self, devices) -> None:
        self.devices, self.ok, self.failed, self.errors = devices, 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for d in self.devices:
                try:
                    out = infer(d.url, "iris", X)
                    assert out["outputs"]
                    self.ok += 1
                except Exception as exc:  # counted, reported by the test
                    self.failed += 1
                    self.errors.append(f"{d.device_id}: {exc!r}")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_three_devices_install_signed_versions_without_a_failed_request(tmp_path, keys, bundles, mosquitto, broker):
    fleet = start_fleet(tmp_path, keys, broker_url=mosquitto.url if broker == "mosquitto" else None)
    devices = [start_device(tmp_path, f"dev{i}", fleet.broker_url, keys[1], tags=f"site={'a' if i < 2 else 'b'}") for i in range(3)]
    try:
        wait_until(lambda: all(device_state(fleet, d.device_id) for d in devices), 30, "devices to register")
        assert not devices[0].ready()  # a new device is live but not ready
        status, body = push(fleet, bundles[0])
        assert status == 201 and body["signature_verified"] is True
        status, body = assign(fleet, "iris", "1.0", selector={"site": "a"})
        assert status == 200 and sorted(a["device"] for a in body["assigned"]) == ["dev0", "dev1"]
        assert assign(fleet, "iris", "1.0", device="dev2")[0] == 200
        wait_until(lambda: all(device_state(fleet, d.device_id)[:2] == ("active", "1.0") for d in devices), 60, "v1 everywhere")
        assert all(served_version(d, "iris") == "1.0" for d in devices)
        assert push(fleet, bundles[1])[0] == 201
        with Traffic(devices) as traffic:
            wait_until(lambda: traffic.ok > 20, 20, "traffic")
            for d in devices:
                assert assign(fleet, "iris", "2.0", device=d.device_id)[0] == 200
            wait_until(lambda: all(device_state(fleet, d.device_id)[:2] == ("active", "2.0") for d in devices), 60, "v2 everywhere")
            calls_at_switch = traffic.ok
            wait_until(lambda: traffic.ok > calls_at_switch + 20, 20, "traffic after the switch")
        assert traffic.failed == 0, traffic.errors[:5]
        assert all(served_version(d, "iris") == "2.0" for d in devices)
        # Each device keeps the previous version for rollback and downloaded one artifact only.
        store = devices[0].store
        assert (store / "previous").resolve().name == "1.0" and (store / "current").resolve().name == "2.0"
        assert [p.name for p in (store / "current" / "artifacts").iterdir()] == ["model.fp32.onnx"]
        # Telemetry and drift appear through the API and the CLI.
        wait_until(lambda: fleet.device("dev0")["telemetry"]["requests"] > 0, 20, "telemetry")
        detail = wait_until(lambda: (lambda d: d if d["drift"] and d["drift"]["features"] else None)(fleet.device("dev0")), 20, "drift")
        assert {f["feature"] for f in detail["drift"]["features"]} >= {"input[0]", "input[3]"}
        assert detail["telemetry"]["latency_p99_s"] > 0 and detail["telemetry"]["rss_bytes"] > 0
        events = [e["event"] for e in detail["events"]]
        assert "installed" in events and "install_started" in events
    finally:
        for d in devices:
            d.proc.terminate()
        fleet.proc.terminate()


@pytest.mark.slow
def test_cli_reports_devices_with_telemetry_over_the_embedded_broker(tmp_path, keys, bundles, run_cli):
    fleet = start_fleet(tmp_path, keys)  # no --broker: the embedded broker
    device = start_device(tmp_path, "edge-1", fleet.broker_url, keys[1], tags="site=x")
    try:
        base = ["--server", fleet.url, "--token", TOKEN]
        pushed = run_cli("fleet", "push", bundles[0], *base)
        assert pushed.exit_code == 0 and "signature verified" in pushed.stdout
        again = run_cli("fleet", "push", bundles[0], *base)
        assert again.exit_code != 0 and "already registered" in again.error_lines[0]
        wait_until(lambda: device_state(fleet, "edge-1"), 30, "registration")
        assigned = run_cli("fleet", "assign", "--selector", "site=x", "iris", "1.0", *base)
        assert assigned.exit_code == 0 and "edge-1: desired iris 1.0 (seq 1)" in assigned.stdout
        wait_until(lambda: device_state(fleet, "edge-1")[:2] == ("active", "1.0"), 60, "install")
        for _ in range(10):
            infer(device.url, "iris", X)
        wait_until(lambda: fleet.device("edge-1")["telemetry"]["requests"] >= 10, 20, "telemetry")
        listed = json.loads(run_cli("fleet", "devices", "--json", *base).stdout)
        assert listed[0]["id"] == "edge-1" and listed[0]["tags"] == {"site": "x"} and listed[0]["online"] is True
        assert listed[0]["backends"] and listed[0]["arch"]
        assert listed[0]["drift"]["level"] in ("ok", "warn", "alert")
        models = json.loads(run_cli("fleet", "models", "--json", *base).stdout)
        assert models[0]["name"] == "iris" and models[0]["signed"] is True
        device.proc.terminate()  # offline after a clean stop
        wait_until(lambda: device_state(fleet, "edge-1")[2] is False, 20, "offline status")
    finally:
        device.proc.kill()
        fleet.proc.terminate()


@pytest.mark.slow
def test_fleet_runs_on_postgres(tmp_path_factory, keys, bundles, mosquitto):
    from fleet_fixtures import start_postgres

    root = tmp_path_factory.mktemp("pg")
    pg = start_postgres(root)
    fleet = start_fleet(root, keys, broker_url=mosquitto.url, extra=["--db", pg.url])
    device = start_device(root, "pg-dev", mosquitto.url, keys[1])
    try:
        wait_until(lambda: device_state(fleet, "pg-dev"), 30, "registration")
        assert push(fleet, bundles[0])[0] == 201
        assert assign(fleet, "iris", "1.0", device="pg-dev")[0] == 200
        wait_until(lambda: device_state(fleet, "pg-dev")[:2] == ("active", "1.0"), 60, "install")
        infer(device.url, "iris", X)
        wait_until(lambda: fleet.device("pg-dev")["telemetry"]["requests"] >= 1, 30, "telemetry in postgres")
        assert not (fleet.data / "fleet.db").exists()  # nothing went to SQLite
    finally:
        device.proc.kill()
        fleet.proc.terminate()
        pg.stop()
