"""`edgeml demo`: the whole system on one machine, end to end.

train two versions of a small model on a bundled dataset → convert each to ONNX, TFLite and OpenVINO
at fp32 and int8 (signed) → start the fleet service with its embedded broker → start simulated
devices (each picks the artifact its backend runs) → push both versions → install version 1 → roll
out version 2 in waves while the devices serve synthetic traffic → summary. Everything it writes goes
under one directory. This module is CLI orchestration: it is the one place that imports every part.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import EdgeMLError, OutputExistsError

MARKER = ".edgeml-demo"
BACKENDS = ("onnxruntime", "litert", "openvino")  # device i has only BACKENDS[i % 3]
DATASET, MODEL = "breast_cancer", "mlp"
Say = Callable[[str], None]


@dataclass
class DemoConfig:
    root: Path
    devices: int = 20
    port: int = 8000
    mqtt_port: int | None = None  # default: a free port
    waves: tuple[int, ...] = (10, 50, 100)
    soak_s: float = 3.0
    telemetry_interval: float = 1.0
    requests_per_second: float = 40.0
    formats: tuple[str, ...] = ("onnx", "tflite", "openvino")
    precisions: tuple[str, ...] = ("fp32", "int8")


@dataclass
class DemoState:
    token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    bundles: dict[str, Path] = field(default_factory=dict)
    service: Any = None
    server: Any = None
    simulation: Any = None
    rollout: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.config.port}" if self.server else ""


def prepare_dir(root: Path) -> Path:
    root = root.absolute()
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise OutputExistsError(f"{root} exists and is not a demo directory; choose another --dir")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("written by edgeml demo; safe to delete\n")
    return root


def train_and_convert(config: DemoConfig, state: DemoState, say: Say) -> None:
    from .convert.options import ConvertOptions, Precision
    from .convert.pipeline import convert
    from .signing import generate_keypair
    from .train.options import TrainOptions
    from .train.training import train

    key, _ = generate_keypair(config.root / "keys")
    for version, seed in (("1.0.0", 0), ("2.0.0", 1)):
        run = config.root / "runs" / f"v{version}"
        say(f"training version {version}: {MODEL} on scikit-learn's {DATASET} dataset")
        train(TrainOptions(out=run, model=MODEL, dataset=DATASET, seed=seed, cv=3, n_jobs=1))
        say(f"converting version {version} to {', '.join(config.formats)} at {', '.join(config.precisions)} (each validated on its runtime)")
        result = convert(ConvertOptions(source=str(run), out=config.root / "bundles" / f"demo-{version}", name="demo",
                                        version=version, formats=list(config.formats),
                                        precisions=[Precision(p) for p in config.precisions], sign_key=key, latency_runs=20))
        state.bundles[version] = result.bundle


def start_fleet(config: DemoConfig, state: DemoState, say: Say) -> None:
    import uvicorn

    from .fleet.api import create_app
    from .fleet.service import FleetConfig, FleetService

    mqtt_port = config.mqtt_port or _free_port()
    fleet_config = FleetConfig(data_dir=config.root / "fleet", mqtt_port=mqtt_port, http_port=config.port,
                               token=state.token, sign_key=config.root / "keys" / "edgeml.key",
                               verify_key=config.root / "keys" / "edgeml.pub")
    state.service = FleetService(fleet_config)
    state.service.start_mqtt()
    server = uvicorn.Server(uvicorn.Config(create_app(state.service), host="127.0.0.1", port=config.port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-fleet-api", daemon=True)
    thread.start()
    _wait(lambda: server.started, 30, "the fleet API to start")
    state.server = server
    say(f"fleet service up: API and dashboard {state.url}, embedded MQTT broker {state.service.broker_url}")


def start_devices(config: DemoConfig, state: DemoState, say: Say) -> None:
    from .fleet.provision import provision_device
    from .runtime.agent.simulate import Simulation, SimulationConfig
    from .signing import load_public_key

    key = load_public_key(config.root / "keys" / "edgeml.pub")
    sim_config = SimulationConfig(config.devices, state.service.broker_url, config.root / "devices", key, key,
                                  {"demo": "yes"}, "device", config.requests_per_second, config.telemetry_interval,
                                  traffic=_held_out_inputs(config), backends=[BACKENDS[i % len(BACKENDS)] for i in range(config.devices)],
                                  broker_login=lambda device_id: provision_device(state.service, device_id)["device_url"])
    state.simulation = Simulation(sim_config).start()
    # Provisioned devices are listed before they connect: wait until each has reported its tags.
    _wait(lambda: len(_api(state, "GET", "/api/v1/devices?tag=demo=yes")) >= config.devices, 60, "devices to register")
    say(f"{config.devices} simulated devices online (a mixed fleet: each has one of {', '.join(BACKENDS)} and installs that format)")


def _held_out_inputs(config: DemoConfig) -> dict[str, Any]:
    """The devices' "real" traffic: the held-out test rows of the training run (labels dropped)."""
    from .samples import load_npz

    arrays = load_npz(config.root / "runs" / "v1.0.0" / "validation.npz")
    return {k: v for k, v in arrays.items() if k not in ("label", "labels", "target", "y")}


def push_and_install(config: DemoConfig, state: DemoState, say: Say) -> None:
    from .fleet.registry import pack_bundle

    for version, bundle in state.bundles.items():
        _api(state, "POST", "/api/v1/models", pack_bundle(bundle), content_type="application/gzip")
    say("pushed versions 1.0.0 and 2.0.0 to the registry (signatures and hashes verified)")
    _api(state, "POST", "/api/v1/assign", {"selector": {"demo": "yes"}, "model": "demo", "version": "1.0.0"})
    _wait(lambda: _count_on(state, "1.0.0") >= config.devices, 120, "every device to install 1.0.0")
    say(f"version 1.0.0 active on all {config.devices} devices")


def roll_out(config: DemoConfig, state: DemoState, say: Say) -> None:
    body = {"model": "demo", "version": "2.0.0", "selector": {"demo": "yes"}, "waves": list(config.waves),
            "soak_s": config.soak_s, "mode": "staged", "on_failure": "rollback",
            "gates": {"max_error_rate": 0.05, "max_p99_ratio": 3.0, "max_install_failures": 1, "max_drift_psi": 1.0,
                      "min_reporting": 1}}
    rollout = _api(state, "POST", "/api/v1/rollouts", body)
    say(f"rollout {rollout['id']} of 2.0.0 started: waves {', '.join(f'{w}%' for w in config.waves)}, soak {config.soak_s:g} s per wave")
    seen_wave = -1
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        rollout = _api(state, "GET", f"/api/v1/rollouts/{rollout['id']}")
        if rollout["current_wave"] != seen_wave:
            seen_wave = rollout["current_wave"]
            wave = rollout["waves"][min(seen_wave, len(rollout["waves"]) - 1)]
            say(f"  wave {seen_wave + 1}/{len(rollout['waves'])} ({wave['percent']:g}%): {len(wave['devices'])} device(s)")
        if rollout["state"] not in ("running",):
            break
        time.sleep(0.5)
    state.rollout = rollout
    say(f"rollout {rollout['state']}: {rollout['installed']} of {rollout['targeted']} devices on 2.0.0")
    if rollout["state"] != "completed":
        raise EdgeMLError(f"the demo rollout ended {rollout['state']}: {rollout['decisions'][-1]['reason'] if rollout['decisions'] else ''}")


def summary(config: DemoConfig, state: DemoState) -> dict[str, Any]:
    from .bundle import read_manifest

    m = read_manifest(state.bundles["2.0.0"])
    formats = [{"format": a.format, "precision": a.precision, "size": a.size, "latency_ms": a.latency.get("median_ms"),
                "accuracy": a.validation.get("metric_artifact"), "agreement": a.validation.get("top1_agreement")}
               for a in m.artifacts]
    devices = _api(state, "GET", "/api/v1/devices")
    return {
        "directory": str(config.root), "dashboard": state.url, "token": state.token, "formats": formats,
        "rollout": {k: state.rollout[k] for k in ("id", "state", "targeted", "installed", "failed")} if state.rollout else None,
        "devices_online": sum(1 for d in devices if d["online"]),
        "versions": {v: sum(1 for d in devices if d["version"] == v) for v in sorted({d["version"] for d in devices if d["version"]})},
        "backends": {b: sum(1 for d in devices if (d.get("reported") or {}).get("backend") == b) for b in BACKENDS},
    }


def stop(state: DemoState) -> None:
    if state.simulation is not None:
        state.simulation.stop()
    if state.server is not None:
        state.server.should_exit = True
    if state.service is not None:
        state.service.stop()


def _count_on(state: DemoState, version: str) -> int:
    return sum(1 for d in _api(state, "GET", "/api/v1/devices") if d["version"] == version and d["state"] == "active")


def _api(state: DemoState, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(state.url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {state.token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise EdgeMLError(f"fleet API {method} {path}: {exc.code} {exc.read()[:300].decode(errors='replace')}") from None


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise EdgeMLError(f"demo: timed out after {timeout:.0f} s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
