"""edgeml.runtime overhead over the raw backend, and `edgeml serve` latency and footprint.

1. `Model.predict` vs ONNX Runtime's `InferenceSession.run` on the same artifact, one intra-op
   thread, single sample and a batch, for a 16-feature MLP (scikit-learn) and the small 3x96x96 CNN
   (PyTorch, skipped without torch). Calls are interleaved so drift hits both sides equally.
2. `edgeml serve` (a subprocess, ONNX Runtime, 1 thread) on loopback: sequential infer latency
   (median, p99) over one keep-alive connection, cold start to the first prediction, resident memory.

Prints tables and writes benchmarks/results/runtime_overhead.json.
    python benchmarks/runtime_overhead.py [--runs 5000] [--skip-cnn]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
RESULTS = Path(__file__).parent / "results"


def build_mlp_bundle(root: Path) -> Path:
    import joblib
    from sklearn.neural_network import MLPClassifier

    from edgeml.convert.options import ConvertOptions
    from edgeml.convert.pipeline import convert

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 16)).astype(np.float32)
    y = (X[:, :4].sum(1) > 0).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPClassifier((64, 32), max_iter=200, random_state=0).fit(X, y)
    joblib.dump(model, root / "mlp.joblib")
    np.savez(root / "mlp.npz", input=X, label=y)
    return convert(ConvertOptions(source=str(root / "mlp.joblib"), out=root / "mlp-1", name="mlp", version="1",
                                  calibration=root / "mlp.npz", latency_runs=5)).bundle


def build_cnn_bundle(root: Path) -> Path:
    from models import save_exported, small_cnn

    from edgeml.convert.options import ConvertOptions
    from edgeml.convert.pipeline import convert

    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 3, 96, 96)).astype(np.float32)
    source = save_exported(small_cnn(), X[:2], root / "cnn.pt2")
    np.savez(root / "cnn.npz", input=X)
    return convert(ConvertOptions(source=str(source), out=root / "cnn-1", name="cnn", version="1",
                                  calibration=root / "cnn.npz", latency_runs=3)).bundle


def raw_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def overhead(bundle: Path, x: np.ndarray, runs: int) -> dict:
    """Interleaved medians of raw `session.run(None, feeds)` and `Model.predict(x)`, in µs."""
    from edgeml.runtime import load

    model = load(bundle, precision="fp32", threads=1)
    session = raw_session(bundle / model.info.artifact)
    name = session.get_inputs()[0].name
    feeds = {name: x}
    raw_run, predict = session.run, model.predict
    for _ in range(max(20, runs // 20)):
        raw_run(None, feeds)
        predict(x)
    raw, ours = [], []
    clock = time.perf_counter_ns
    for _ in range(runs):
        t0 = clock()
        raw_run(None, feeds)
        t1 = clock()
        predict(x)
        t2 = clock()
        raw.append(t1 - t0)
        ours.append(t2 - t1)
    raw_us, ours_us = statistics.median(raw) / 1000, statistics.median(ours) / 1000
    return {"batch": int(x.shape[0]), "runs": runs, "raw_median_us": round(raw_us, 2),
            "predict_median_us": round(ours_us, 2), "overhead_us": round(ours_us - raw_us, 2),
            "overhead_ratio": round(ours_us / raw_us, 4)}


def serve_latency(bundle: Path, x: np.ndarray, requests: int) -> dict:
    """Start `edgeml serve`, time cold start to first prediction, then sequential requests; RSS."""
    import psutil

    body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]}).encode()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "edgeml", "serve", str(bundle), "--port", "0", "--threads", "1",
                             "--precision", "fp32"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        line = proc.stderr.readline().decode()
        url = line.split(" at ")[1].split(";")[0]
        host, port = url[len("http://"):].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))

        def infer() -> None:
            conn.request("POST", "/v2/models/mlp/infer", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"infer failed: {response.status}")

        infer()
        cold_start = time.perf_counter() - t0
        for _ in range(200):
            infer()
        times = []
        for _ in range(requests):
            t = time.perf_counter()
            infer()
            times.append(time.perf_counter() - t)
        rss = psutil.Process(proc.pid).memory_info().rss
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    times.sort()
    return {"requests": requests, "median_ms": round(statistics.median(times) * 1000, 3),
            "p99_ms": round(times[int(0.99 * len(times)) - 1] * 1000, 3),
            "requests_per_s": round(len(times) / sum(times), 1),
            "cold_start_s": round(cold_start, 3), "rss_mb": round(rss / 2**20, 1)}


def print_rows(title: str, columns: list[str], rows: list[list]) -> None:
    from edgeml.table import print_table

    print_table(title, columns, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000, help="timed calls per MLP case (the CNN uses runs/25)")
    parser.add_argument("--requests", type=int, default=2000, help="timed HTTP requests")
    parser.add_argument("--skip-cnn", action="store_true", help="leave out the CNN (needs torch)")
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime_overhead.json")
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    results: dict = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine()}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [("mlp-16", build_mlp_bundle(root), (16,), args.runs, (1, 64))]
        if not args.skip_cnn:
            try:
                import torch  # noqa: F401
                cases.append(("cnn-3x96x96", build_cnn_bundle(root), (3, 96, 96), max(50, args.runs // 25), (1, 8)))
            except ImportError:
                print("torch is not installed: skipping the CNN", file=sys.stderr)
        rows, results["overhead"] = [], []
        for label, bundle, shape, runs, batches in cases:
            for batch in batches:
                x = rng.normal(size=(batch, *shape)).astype(np.float32)
                r = {"model": label, **overhead(bundle, x, runs)}
                results["overhead"].append(r)
                rows.append([label, batch, runs, r["raw_median_us"], r["predict_median_us"], r["overhead_us"], r["overhead_ratio"]])
        print_rows("Model.predict vs onnxruntime InferenceSession.run (1 thread, medians)",
                   ["model", "batch", "runs", "raw µs", "predict µs", "overhead µs", "ratio"], rows)
        mlp_bundle = cases[0][1]
        s = results["serve"] = serve_latency(mlp_bundle, rng.normal(size=(1, 16)).astype(np.float32), args.requests)
        print_rows("edgeml serve, MLP, 1 client, keep-alive, loopback",
                   ["requests", "median ms", "p99 ms", "req/s", "cold start s", "RSS MB"],
                   [[s["requests"], s["median_ms"], s["p99_ms"], s["requests_per_s"], s["cold_start_s"], s["rss_mb"]]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
