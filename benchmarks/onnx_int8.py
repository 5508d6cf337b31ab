"""fp32 vs int8 ONNX through `edgeml convert`: size ratio, single-thread latency ratio, accuracy delta.

Targets (issue 2): int8 >= 3.5x smaller, >= 2x faster than fp32 (ONNX Runtime, one thread, batch 1),
accuracy drop <= 1 point on digits. Both variants are timed in the same run, interleaved, and the
medians compared, so a noisy shared machine affects both alike.

    python benchmarks/onnx_int8.py [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from models import digits_split, save_exported, small_cnn, small_cnn_full_resolution, train_digits_cnn

RESULTS = Path(__file__).parent / "results"


def convert(source: Path, out: Path, calibration: Path, validation: Path) -> Path:
    from edgeml.convert.options import ConvertOptions, Precision
    from edgeml.convert.pipeline import convert as run_convert

    options = ConvertOptions(source=str(source), out=out, name=out.name, version="1",
                             precisions=[Precision.FP32, Precision.INT8], calibration=calibration,
                             validation=validation, latency_runs=5)
    return run_convert(options).bundle


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def interleaved_medians(sessions: dict[str, object], feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(10):
            s.run(None, feed)
    for _ in range(runs):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def accuracy(sess, X: np.ndarray, y: np.ndarray) -> float:
    name = sess.get_inputs()[0].name
    return float((sess.run(None, {name: X})[0].argmax(1) == y).mean())


def bench_model(label: str, bundle: Path, feed_shape: tuple[int, ...], runs: int, test=None) -> dict:
    fp32, int8 = bundle / "artifacts/model.fp32.onnx", bundle / "artifacts/model.int8.onnx"
    sessions = {"fp32": session(fp32), "int8": session(int8)}
    name = sessions["fp32"].get_inputs()[0].name
    feed = {name: np.random.default_rng(0).standard_normal(feed_shape).astype(np.float32)}
    med = interleaved_medians(sessions, feed, runs)
    row = {
        "model": label,
        "fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size,
        "size_ratio": fp32.stat().st_size / int8.stat().st_size,
        "fp32_ms": med["fp32"], "int8_ms": med["int8"], "speedup": med["fp32"] / med["int8"],
    }
    if test is not None:
        X, y = test
        row["fp32_accuracy"] = accuracy(sessions["fp32"], X, y)
        row["int8_accuracy"] = accuracy(sessions["int8"], X, y)
        row["accuracy_delta_points"] = 100 * (row["int8_accuracy"] - row["fp32_accuracy"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        # Small CNN, 3x96x96: calibration on random images (speed and size only; untrained).
        calib = rng.random((64, 3, 96, 96), dtype=np.float32)
        np.savez(tmp / "cnn_cal.npz", input=calib[:48])
        np.savez(tmp / "cnn_val.npz", input=calib[48:])
        for label, build in (("small CNN 3x96x96", small_cnn), ("  variant: full-res block 1", small_cnn_full_resolution)):
            src = save_exported(build(), calib[:2], tmp / f"{build.__name__}.pt2")
            bundle = convert(src, tmp / build.__name__, tmp / "cnn_cal.npz", tmp / "cnn_val.npz")
            rows.append(bench_model(label, bundle, (1, 3, 96, 96), args.runs))
        # Digits CNN: trained, calibrated on training images, accuracy on the held-out test set.
        Xtr, ytr, Xte, yte = digits_split()
        np.savez(tmp / "d_cal.npz", input=Xtr[:500])
        np.savez(tmp / "d_val.npz", input=Xte, label=yte)
        src = save_exported(train_digits_cnn(), Xtr[:2], tmp / "digits.pt2")
        bundle = convert(src, tmp / "digits", tmp / "d_cal.npz", tmp / "d_val.npz")
        rows.append(bench_model("digits CNN 1x8x8", bundle, (1, 1, 8, 8), args.runs * 5, (Xte, yte)))
    print_rows(rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "onnx_int8.json").write_text(json.dumps(rows, indent=2))


def print_rows(rows: list[dict]) -> None:
    print(f"{'model':28} {'fp32 KiB':>9} {'int8 KiB':>9} {'size x':>7} {'fp32 ms':>8} {'int8 ms':>8} {'speed x':>8} {'acc Δ pts':>9}")
    for r in rows:
        acc = f"{r['accuracy_delta_points']:+.2f}" if "accuracy_delta_points" in r else "-"
        print(f"{r['model']:28} {r['fp32_bytes'] / 1024:9.1f} {r['int8_bytes'] / 1024:9.1f} {r['size_ratio']:7.2f} "
              f"{r['fp32_ms']:8.3f} {r['int8_ms']:8.3f} {r['speedup']:8.2f} {acc:>9}")
    print("targets: size x >= 3.5, speed x >= 2.0, accuracy drop <= 1 point (digits)")


if __name__ == "__main__":
    main()
