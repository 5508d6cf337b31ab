"""Batch prediction: `edgeml predict --input big.npz --output out.parquet` against a raw ONNX Runtime loop.

Target (issue 16): >= 0.8x the raw loop's throughput and <= 2x its peak memory, over 100,000 digit
images (the digits CNN of benchmarks/models.py, fp32 ONNX). Each variant runs in its own process
(peak RSS from wait4), interleaved, `--rounds` times; medians are compared.

    python benchmarks/batch_predict.py [--rows 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from models import digits_split, save_exported, train_digits_cnn

RAW_LOOP = """
import sys, numpy as np, onnxruntime as ort
model, data, out = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
with np.load(data) as f:
    x = f[name]
parts = []
for i in range(0, len(x), 1024):
    parts.append(session.run(None, {name: x[i:i + 1024]}))
outputs = [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
np.savez(out, *outputs)
"""


# The child reports its own peak (VmHWM starts afresh at exec; ru_maxrss would carry this parent's RSS).
PEAK = """
import atexit, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("PEAK_KB " + line.split()[1] + "\\n")
atexit.register(_peak)
"""

EDGEML_CLI = """
from edgeml.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    if exc.code:
        raise
"""


def child(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{args[:4]} failed: {proc.stderr[-2000:]}")
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_KB ")]
    return elapsed, int(peak[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from edgeml.convert.options import ConvertOptions, Precision
    from edgeml.convert.pipeline import convert

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        X, _, _, _ = digits_split()
        source = save_exported(train_digits_cnn(epochs=2), X[:2], root / "digits.pt2")
        bundle = convert(ConvertOptions(source=str(source), out=root / "digits", name="digits", version="1",
                                        precisions=[Precision.FP32], latency_runs=3)).bundle
        name = next(iter(np.load(bundle / "samples.npz").files)).split("/", 1)[1]
        rows = np.resize(X, (args.rows, *X.shape[1:])).astype(np.float32)
        np.savez(root / "in.npz", **{name: rows})
        onnx_file = next(bundle.rglob("*.onnx"))
        variants = {
            "raw ONNX Runtime loop (1,024 rows)": [sys.executable, "-c", PEAK + RAW_LOOP, str(onnx_file),
                                                   str(root / "in.npz"), str(root / "raw.npz")],
            "edgeml predict --output .parquet": [sys.executable, "-c", PEAK + EDGEML_CLI, "predict", str(bundle), "--input",
                                                 str(root / "in.npz"), "--output", str(root / "out.parquet"),
                                                 "--backend", "onnxruntime", "--precision", "fp32"],
        }
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for label, cmd in variants.items():
                results[label].append(child(cmd))
    print(f"{args.rows} digit images, {args.rounds} rounds, medians")
    med = {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in results.items()}
    for label, (t, m) in med.items():
        print(f"  {label:40s} {t:6.2f} s  {args.rows / t:9.0f} rows/s  peak RSS {m:6.0f} MB")
    (raw_t, raw_m), (ours_t, ours_m) = med.values()
    print(f"throughput ratio (edgeml / raw): {raw_t / ours_t:.2f}  (target >= 0.8)")
    print(f"peak memory ratio (edgeml / raw): {ours_m / raw_m:.2f}  (target <= 2)")


if __name__ == "__main__":
    main()
