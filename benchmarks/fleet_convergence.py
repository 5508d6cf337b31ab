"""Convergence: time from `fleet assign` (by selector) to every simulated device reporting the new
version active. Target (issue 5): <= 30 s for 200 devices on this 2-core machine.

The fleet (`edgeml fleet serve`, Mosquitto broker) and the simulator (`edgeml fleet simulate`, the
real device agent code, one process) run as separate processes.

    python benchmarks/fleet_convergence.py [--devices 200]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TOKEN = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(url: str, path: str, body: dict | bytes | None = None) -> object:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if isinstance(body, dict):
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def wait(predicate, timeout: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if predicate():
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise TimeoutError


def make_bundle(root: Path, key: Path, version: str) -> Path:
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    from edgeml.convert.options import ConvertOptions
    from edgeml.convert.pipeline import convert

    X, y = load_iris(return_X_y=True)
    joblib.dump(MLPClassifier((8,), max_iter=300, random_state=int(version[0])).fit(X, y), root / f"m{version}.joblib")
    np.savez(root / "iris.npz", input=X.astype(np.float32), label=y)
    return convert(ConvertOptions(source=str(root / f"m{version}.joblib"), out=root / f"iris-{version}", name="iris",
                                  version=version, calibration=root / "iris.npz", sign_key=key, latency_runs=3)).bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    from edgeml.fleet.registry import pack_bundle
    from edgeml.signing import generate_keypair

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        key, pub = generate_keypair(tmp / "keys")
        v1, v2 = make_bundle(tmp, key, "1.0"), make_bundle(tmp, key, "2.0")
        mqtt_port, http = free_port(), free_port()
        (tmp / "m.conf").write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n")
        procs = [subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(tmp / "m.conf")], stderr=subprocess.DEVNULL)]
        time.sleep(0.5)
        url = f"http://127.0.0.1:{http}"
        procs.append(subprocess.Popen([sys.executable, "-m", "edgeml", "fleet", "serve", "--broker", f"mqtt://127.0.0.1:{mqtt_port}",
                                       "--http-port", str(http), "--data", str(tmp / "fleet"), "--token", TOKEN,
                                       "--sign-key", str(key), "--verify-key", str(pub)], stderr=subprocess.DEVNULL))
        try:
            wait(lambda: _ok(url), 60)
            for b in (v1, v2):
                api(url, "/api/v1/models", pack_bundle(b))
            procs.append(subprocess.Popen([sys.executable, "-m", "edgeml", "fleet", "simulate", "--devices", str(args.devices),
                                           "--server", url, "--token", TOKEN, "--tags", "fleet=bench", "--rps", "1",
                                           "--telemetry-interval", "10", "--store", str(tmp / "sim")], stderr=subprocess.DEVNULL))
            registered = wait(lambda: len(api(url, "/api/v1/devices")) >= args.devices, 180)
            rows = []
            for version in ("1.0", "2.0"):
                t0 = time.perf_counter()
                api(url, "/api/v1/assign", {"selector": {"fleet": "bench"}, "model": "iris", "version": version})
                wait(lambda: sum(d["version"] == version and d["state"] == "active" for d in api(url, "/api/v1/devices")) >= args.devices, 300)
                rows.append({"version": version, "seconds": time.perf_counter() - t0})
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait(30)
    for r in rows:
        print(f"assign {r['version']} -> all {args.devices} devices active: {r['seconds']:.1f} s   (target <= 30 s)")
    print(f"({args.devices} simulated devices registered in {registered:.1f} s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet_convergence.json").write_text(json.dumps({"devices": args.devices, "runs": rows}, indent=2))


def _ok(url: str) -> bool:
    try:
        return json.loads(urllib.request.urlopen(url + "/api/v1/health").read())["mqtt_connected"]
    except OSError:
        return False


if __name__ == "__main__":
    main()
