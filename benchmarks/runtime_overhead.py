"""edgeml.runtime overhead over the raw backend, and `edgeml serve` latency and footprint.

1. `Model.predict` vs the engine's own call on the same artifact, one intra-op thread, single sample
   and a batch, for a 16-feature MLP (scikit-learn) and the small 3x96x96 CNN (PyTorch, skipped
   without torch), on each backend: ONNX Runtime `InferenceSession.run`, the LiteRT interpreter's
   set_tensor/invoke/get_tensor, OpenVINO's infer request. The tflite and openvino artifacts are
   converted separately; a backend that is not installed or whose conversion fails is skipped with
   the reason. Calls are interleaved so drift hits both sides equally.
2. `edgeml serve` (a subprocess, ONNX Runtime, 1 thread) on loopback: sequential infer latency
   (median, p99) over one keep-alive connection, cold start to the first prediction, resident memory.

Targets (issue 4, Performance 1 and 3): p50 overhead <= 10% and <= 3 us on the MLP; cold start <= 1 s,
RSS <= 120 MB. Prints tables and the target checks; writes benchmarks/results/runtime_overhead.json.
    python benchmarks/runtime_overhead.py [--runs 5000] [--skip-cnn] [--backends onnxruntime,litert,openvino]
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


FORMAT_OF = {"onnxruntime": "onnx", "litert": "tflite", "openvino": "openvino"}


def build_mlp_bundle(root: Path, formats: tuple[str, ...] = ("onnx",)) -> Path:
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
    out = root / ("mlp-1" if formats == ("onnx",) else "mlp-1-" + "-".join(formats))
    return convert(ConvertOptions(source=str(root / "mlp.joblib"), out=out, name="mlp", version="1",
                                  formats=list(formats), calibration=root / "mlp.npz", latency_runs=5)).bundle


def build_cnn_bundle(root: Path, formats: tuple[str, ...] = ("onnx",)) -> Path:
    from models import save_exported, small_cnn

    from edgeml.convert.options import ConvertOptions
    from edgeml.convert.pipeline import convert

    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 3, 96, 96)).astype(np.float32)
    source = save_exported(small_cnn(), X[:2], root / "cnn.pt2")
    np.savez(root / "cnn.npz", input=X)
    out = root / ("cnn-1" if formats == ("onnx",) else "cnn-1-" + "-".join(formats))
    return convert(ConvertOptions(source=str(source), out=out, name="cnn", version="1", formats=list(formats),
                                  calibration=root / "cnn.npz", latency_runs=3)).bundle


def bundles_by_backend(build, root: Path, backends: list[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """One bundle per backend (each format converted on its own, so one failing does not stop the others)."""
    from edgeml.runtime.backends import get_backend

    found, skipped = {}, {}
    for backend in backends:
        if not get_backend(backend).available():
            skipped[backend] = f"{backend} is not installed"
            continue
        try:
            found[backend] = build(root, (FORMAT_OF[backend],))
        except Exception as exc:  # report and go on: the other backends are still measured
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            skipped[backend] = f"converting to {FORMAT_OF[backend]} failed: {type(exc).__name__}: {first[:200]}"
    return found, skipped


def raw_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def raw_ort(path: Path, x: np.ndarray):
    """`session.run(None, feeds)`, as ONNX Runtime's docs show it."""
    import functools

    session = raw_session(path)
    return functools.partial(session.run, None, {session.get_inputs()[0].name: x})


def raw_litert(path: Path, x: np.ndarray):
    """set_tensor, invoke, get_tensor of every output: the LiteRT interpreter's documented loop."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    index = it.get_input_details()[0]["index"]
    it.resize_tensor_input(index, list(x.shape), strict=True)
    it.allocate_tensors()
    outputs = [d["index"] for d in it.get_output_details()]
    set_tensor, invoke, get_tensor = it.set_tensor, it.invoke, it.get_tensor

    def call():
        set_tensor(index, x)
        invoke()
        return [get_tensor(i) for i in outputs]

    return call


def raw_openvino(path: Path, x: np.ndarray):
    """An infer request of a model compiled for CPU, latency hint, f32, one thread; outputs read."""
    import openvino as ov

    core = ov.Core()
    xml = path / "model.xml" if path.is_dir() else path
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"})
    request = compiled.create_infer_request()
    ports = list(compiled.outputs)
    infer, feeds = request.infer, {0: x}

    def call():
        result = infer(feeds, share_inputs=True)
        return [result[p] for p in ports]

    return call


RAW_CALLS = {"onnxruntime": raw_ort, "litert": raw_litert, "openvino": raw_openvino}


def overhead(bundle: Path, x: np.ndarray, runs: int, backend: str = "onnxruntime") -> dict:
    """Interleaved medians of the engine's own call and `Model.predict(x)`, in µs."""
    from edgeml.runtime import load

    model = load(bundle, backend=backend, precision="fp32", threads=1)
    raw_run, predict = RAW_CALLS[backend](bundle / model.info.artifact, x), model.predict
    for _ in range(max(20, runs // 20)):
        raw_run()
        predict(x)
    raw, ours = [], []
    clock = time.perf_counter_ns
    for _ in range(runs):
        t0 = clock()
        raw_run()
        t1 = clock()
        predict(x)
        t2 = clock()
        raw.append(t1 - t0)
        ours.append(t2 - t1)
    raw_us, ours_us = statistics.median(raw) / 1000, statistics.median(ours) / 1000
    return {"backend": backend, "batch": int(x.shape[0]), "runs": runs, "raw_median_us": round(raw_us, 2),
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
    parser.add_argument("--backends", default=",".join(FORMAT_OF), help="comma-separated backends to compare")
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime_overhead.json")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    rng = np.random.default_rng(1)
    results: dict = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine()},
                     "skipped": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = [("mlp-16", build_mlp_bundle, (16,), args.runs, (1, 64))]
        if not args.skip_cnn:
            try:
                import torch  # noqa: F401
                models.append(("cnn-3x96x96", build_cnn_bundle, (3, 96, 96), max(50, args.runs // 25), (1, 8)))
            except ImportError:
                print("torch is not installed: skipping the CNN", file=sys.stderr)
        rows, results["overhead"], mlp_bundles = [], [], {}
        for label, build, shape, runs, batches in models:
            found, skipped = bundles_by_backend(build, root, backends)
            results["skipped"].update({f"{label} on {b}": why for b, why in skipped.items()})
            mlp_bundles = mlp_bundles or found
            for backend, bundle in found.items():
                for batch in batches:
                    x = rng.normal(size=(batch, *shape)).astype(np.float32)
                    r = {"model": label, **overhead(bundle, x, runs, backend)}
                    results["overhead"].append(r)
                    rows.append([label, backend, batch, runs, r["raw_median_us"], r["predict_median_us"],
                                 r["overhead_us"], r["overhead_ratio"]])
        print_rows("Model.predict vs the engine's own call (1 thread, interleaved, medians)",
                   ["model", "backend", "batch", "runs", "raw µs", "predict µs", "overhead µs", "ratio"], rows)
        for what, why in results["skipped"].items():
            print(f"  skipped {what}: {why}")
        if "onnxruntime" in mlp_bundles:
            s = results["serve"] = serve_latency(mlp_bundles["onnxruntime"], rng.normal(size=(1, 16)).astype(np.float32),
                                                 args.requests)
            print_rows("edgeml serve, MLP, 1 client, keep-alive, loopback",
                       ["requests", "median ms", "p99 ms", "req/s", "cold start s", "RSS MB"],
                       [[s["requests"], s["median_ms"], s["p99_ms"], s["requests_per_s"], s["cold_start_s"], s["rss_mb"]]])
    print_checks(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


def print_checks(results: dict) -> None:
    """The issue's targets against this run's figures."""
    checks = []
    for r in results["overhead"]:
        if r["model"] == "mlp-16" and r["batch"] == 1:
            ok = r["overhead_ratio"] <= 1.10 and r["overhead_us"] <= 3.0
            checks.append((f"MLP on {r['backend']}: overhead {r['overhead_us']} µs, ratio {r['overhead_ratio']} "
                           "(<= 3 µs and <= 1.10)", ok))
    serve = results.get("serve")
    if serve:
        checks.append((f"edgeml serve cold start {serve['cold_start_s']} s (<= 1 s)", serve["cold_start_s"] <= 1.0))
        checks.append((f"edgeml serve RSS {serve['rss_mb']} MB (<= 120 MB)", serve["rss_mb"] <= 120))
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")


if __name__ == "__main__":
    main()
