"""A closed loop for the retraining tests: an iris run (logistic regression) converted to iris 1.0, a fleet with
Mosquitto, one device serving it with capture on, and helpers to send requests the device captures."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fleet_fixtures import TOKEN, start_device, start_fleet, start_mosquitto, wait_until


@dataclass
class Loop:
    root: Path
    run: Path  # the run that produced iris 1.0
    fleet: object
    device: object
    keys: tuple[Path, Path]
    inputs: list[str]  # the bundle's input names, one per column


def cli(*args: str):
    from click.testing import CliRunner

    from edgeml.cli import cli as root

    result = CliRunner().invoke(root, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def send(loop: Loop, rows: np.ndarray) -> None:
    """One request of `rows` (n x 4) to the device, one FP32 tensor per column."""
    body = {"inputs": [{"name": name, "shape": [len(rows), 1], "datatype": "FP32", "data": rows[:, i].tolist()}
                       for i, name in enumerate(loop.inputs)]}
    req = urllib.request.Request(f"{loop.device.url}/v2/models/iris/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def captured(loop: Loop, version: str | None = None) -> int:
    query = "model=iris&limit=1000" + (f"&version={version}" if version else "")
    return len(loop.fleet.get(f"/api/v1/capture/rows?{query}")["rows"])


def iris_like(n: int, seed: int) -> np.ndarray:
    """Iris rows with a little noise: what the fleet sees when nothing drifts."""
    from sklearn.datasets import load_iris

    rng = np.random.default_rng(seed)
    X = load_iris().data
    return (X[rng.integers(0, len(X), n)] + rng.normal(0, 0.05, (n, 4))).astype(np.float32)


@pytest.fixture(scope="session")
def loop(tmp_path_factory, keys):
    from edgeml.train.options import ExplainKind, TrainOptions
    from edgeml.train.training import train

    root = tmp_path_factory.mktemp("retrain")
    run = root / "iris-run"
    train(TrainOptions(out=run, model="logistic_regression", dataset="iris", cv=2, n_jobs=1,
                       explain=ExplainKind.NONE, robustness=False))
    r = cli("convert", run, "--name", "iris", "--version", "1.0", "--sign-key", keys[0], "--out", root / "iris-1.0")
    assert r.exit_code == 0, r.output
    manifest = json.loads((root / "iris-1.0" / "manifest.json").read_text())
    broker = start_mosquitto(root)
    fleet = start_fleet(root, keys, broker_url=broker.url, extra=["--retrain-check", "1s"])
    device = start_device(root, f"retrain-{time.time_ns() % 10**6}", broker.url, keys[1], interval=0.5)
    try:
        assert cli("fleet", "push", root / "iris-1.0", "--server", fleet.url, "--token", TOKEN).exit_code == 0
        wait_until(lambda: fleet.device(device.device_id), 30, "registration")
        r = cli("fleet", "assign", device.device_id, "iris", "1.0", "--capture", "1.0", "--server", fleet.url, "--token", TOKEN)
        assert r.exit_code == 0, r.output
        wait_until(lambda: (fleet.device(device.device_id) or {}).get("state") == "active", 60, "iris 1.0 active")
        policy = device.store / "capture" / "policy.json"
        wait_until(policy.exists, 30, "the device to take the capture policy")
        yield Loop(root, run, fleet, device, keys, [i["name"] for i in manifest["inputs"]])
    finally:
        device.proc.kill()
        fleet.proc.terminate()
        broker.stop()
