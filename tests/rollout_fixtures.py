"""Rollout test rig: iris bundles (good, faulty on real traffic, slow), a fleet on Mosquitto and N
simulated devices (the real device agent, in this process) serving traffic from a fixed .npz file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fleet_fixtures import Fleet, start_fleet, wait_until

TELEMETRY_S = 0.3
# Simulated devices share one process on a shared 2-core host: a good version's p99 ratio wanders up
# to ~2.5 there (measured), so good-version tests allow 3; the slow-version test uses the default 1.5.
FAST_GATES = {"max_error_rate": 0.05, "max_p99_ratio": 3.0, "max_install_failures": 0, "max_drift_psi": 1.0,
              "min_reporting": 3}


def iris_bundle(root: Path, keys, version: str, seed: int = 0, hidden: tuple[int, ...] = (8,), extra_features: int = 0) -> Path:
    """An iris MLP bundle. extra_features > 0: the model expects more inputs than real traffic has (it
    passes its own smoke test, then fails every real request); a large `hidden` makes a slow version."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    from edgeml.convert.options import ConvertOptions, Precision
    from edgeml.convert.pipeline import convert

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    if extra_features:
        X = np.hstack([X, np.random.default_rng(seed).normal(size=(len(X), extra_features)).astype(np.float32)])
    model = MLPClassifier(hidden, max_iter=300 if len(hidden) == 1 else 20, random_state=seed).fit(X, y)
    name = f"iris-{version}"
    joblib.dump(model, root / f"{name}.joblib")
    np.savez(root / f"{name}.npz", input=X, label=y)
    options = ConvertOptions(source=str(root / f"{name}.joblib"), out=root / name, name="iris", version=version,
                             precisions=[Precision.FP32], calibration=root / f"{name}.npz", sign_key=keys[0], latency_runs=3)
    return convert(options).bundle


def traffic_file(root: Path) -> Path:
    """Real traffic: iris rows (4 features) keyed by the input name."""
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    path = root / "traffic.npz"
    np.savez(path, input=X.astype(np.float32))
    return path


@dataclass
class Rig:
    fleet: Fleet
    sim: Any
    root: Path
    keys: tuple[Path, Path]
    tags: dict[str, str]

    # -- API ---------------------------------------------------------------------------------------
    def push(self, bundle: Path) -> None:
        from edgeml.fleet.registry import pack_bundle

        status, body = self.fleet.api("POST", "/api/v1/models", pack_bundle(bundle))
        assert status in (201, 409), (status, body)

    def start(self, version: str, **body: Any) -> tuple[int, dict[str, Any]]:
        spec = {"model": "iris", "version": version, "selector": self.tags, "waves": [10, 50, 100], "soak_s": 1,
                "gates": dict(FAST_GATES), **body}
        return self.fleet.api("POST", "/api/v1/rollouts", spec)

    def rollout(self, rid: int) -> dict[str, Any]:
        return self.fleet.get(f"/api/v1/rollouts/{rid}")

    def wait_state(self, rid: int, states: tuple[str, ...], timeout: float = 90) -> dict[str, Any]:
        return wait_until(lambda: (lambda r: r if r["state"] in states else None)(self.rollout(rid)), timeout,
                          f"rollout {rid} to reach {states} (now {self.rollout(rid)['state']})")

    def versions(self) -> dict[str, str | None]:
        return self.sim.versions()

    def on(self, version: str, ids=None) -> bool:
        v = self.versions()
        return all(v[d] == version for d in (ids if ids is not None else v))

    def restart_fleet(self) -> None:
        """Kill the fleet service (SIGKILL) and start it again on the same data directory and ports."""
        old = self.fleet
        old.proc.kill()
        port = int(old.url.rsplit(":", 1)[1])
        self.fleet = start_fleet(self.root, self.keys, broker_url=old.broker_url, http_port=port, data=old.data)

    def stop(self) -> None:
        self.sim.stop()
        self.fleet.proc.terminate()


def start_rig(root: Path, keys, broker_url: str, base: Path, devices: int = 20, rps: float = 40.0,
              traffic: Path | None = None, tags: dict[str, str] | None = None) -> Rig:
    """A fleet, `devices` simulated devices all serving `base` (pushed and assigned), traffic from a file."""
    from edgeml.runtime.agent.simulate import Simulation, SimulationConfig, load_traffic
    from edgeml.signing import load_public_key

    fleet = start_fleet(root, keys, broker_url=broker_url)
    tags = tags or {"rig": root.name}  # the broker keeps other tests' devices (retained status): select ours
    pub = load_public_key(keys[1])
    config = SimulationConfig(devices, broker_url, root / "sim", pub, pub, tags, f"sim{time.time_ns() % 10**6}",
                              rps, TELEMETRY_S, traffic=load_traffic(traffic) if traffic else None)
    sim = Simulation(config).start()
    rig = Rig(fleet, sim, root, keys, tags)
    try:
        ids = [a.config.device_id for a in sim.agents]
        wait_until(lambda: all(fleet.device(d) for d in ids), 60, "simulated devices to register")
        rig.push(base)
        status, body = fleet.api("POST", "/api/v1/assign", {"model": "iris", "version": "1.0", "selector": tags})
        assert status == 200, body
        wait_until(lambda: rig.on("1.0"), 120, "every device on 1.0")
        wait_until(lambda: all((fleet.device(d) or {}).get("version") == "1.0" for d in ids), 60, "the fleet to see 1.0")
    except BaseException:
        rig.stop()
        raise
    return rig
