"""Format x precision benchmark: size, single-thread latency on each format's own runtime, speed-up and
size ratio against the same format's fp32, and accuracy delta on scikit-learn's digits.

The models are those of the ONNX benchmark (benchmarks/onnx_int8.py, from benchmarks/models.py), each
converted once by `edgeml convert`'s pipeline to onnx, tflite and openvino at fp32, fp16 and int8 (so
every artifact is also validated on its own runtime):
  * small_cnn()        - 3x96x96, stride-2 stem + conv blocks of 64/128/256 channels (random init,
                         calibrated on random images): size and latency;
  * train_digits_cnn() - trained on digits' training split, calibrated on 500 training images:
                         accuracy of every artifact on the 397 held-out test images.
Latency: batch 1, one thread, through edgeml's runtime backends (ONNX Runtime, the LiteRT interpreter,
OpenVINO CPU), the three precisions of one format timed interleaved in the same loop (order rotated
every round), medians compared. The machine is shared: read the ratios, not the absolute times.

    python benchmarks/formats.py [--runs 300]    # writes benchmarks/results/formats.json

Targets (issue 3): int8 >= 3.5x smaller and >= 2x faster than the same format's fp32, accuracy drop
<= 1 point; fp16 ~2x smaller.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from models import digits_split, save_exported, small_cnn, train_digits_cnn

FORMATS = ["onnx", "tflite", "openvino"]
PRECISIONS = ["fp32", "fp16", "int8"]
RESULTS = Path(__file__).parent / "results" / "formats.json"
TARGETS = {"int8_size_ratio": 3.5, "int8_speedup": 2.0, "max_accuracy_drop_points": 1.0, "fp16_size_ratio": 2.0}


def convert(source: Path, out: Path, calibration: Path, validation: Path):
    from edgeml.convert.options import ConvertOptions, Precision
    from edgeml.convert.pipeline import convert as run

    options = ConvertOptions(source=str(source), out=out, name=out.name, version="1", formats=FORMATS,
                             precisions=[Precision(p) for p in PRECISIONS], calibration=calibration,
                             validation=validation, allow_degraded=True, latency_runs=20)
    return run(options)


def load(bundle: Path, entry):
    from edgeml.runtime.backends import BackendOptions, get_backend

    return get_backend(entry.backend).load(bundle / entry.path, BackendOptions(threads=1, precision=entry.precision))


def interleaved_medians(sessions: dict[str, object], feeds: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    """Median ms per session, all timed in one loop; the order rotates each round so none always goes first."""
    for s in sessions.values():
        for _ in range(10):
            s.run(feeds)
    names = list(sessions)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            run = sessions[name].run
            t0 = time.perf_counter()
            run(feeds)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def accuracy(session, X: np.ndarray, y: np.ndarray) -> float:
    out = session.run({session.input_names[0]: X})[session.output_names[0]]
    return float((np.asarray(out).argmax(1) == y).mean())


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="interleaved rounds per format (default 300)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        calib = rng.random((64, 3, 96, 96), dtype=np.float32)
        np.savez(tmp / "cnn_cal.npz", input=calib[:48])
        np.savez(tmp / "cnn_val.npz", input=calib[48:])
        cnn = convert(save_exported(small_cnn(), calib[:2], tmp / "small_cnn.pt2"), tmp / "small_cnn",
                      tmp / "cnn_cal.npz", tmp / "cnn_val.npz")
        Xtr, _, Xte, yte = digits_split()
        np.savez(tmp / "d_cal.npz", input=Xtr[:500])
        np.savez(tmp / "d_val.npz", input=Xte, label=yte)
        model = train_digits_cnn()
        with torch.no_grad():
            source_acc = float((model(torch.from_numpy(Xte)).argmax(1).numpy() == yte).mean())
        digits = convert(save_exported(model, Xtr[:2], tmp / "digits.pt2"), tmp / "digits", tmp / "d_cal.npz", tmp / "d_val.npz")
        digits_by_key = {r.entry.key: r for r in digits.results}

        feed = rng.standard_normal((1, 3, 96, 96)).astype(np.float32)
        for fmt in FORMATS:
            results = {r.entry.precision: r for r in cnn.results if r.entry.format == fmt}
            sessions = {p: load(cnn.bundle, r.entry) for p, r in results.items()}
            med = interleaved_medians(sessions, {sessions["fp32"].input_names[0]: feed}, args.runs)
            for p, r in results.items():
                d = digits_by_key[r.entry.key]
                rows.append({
                    "format": fmt, "precision": p, "backend": r.entry.backend, "size_bytes": r.entry.size,
                    "latency_ms": round(med[p], 4), "validation_passed": r.report.passed,
                    "quantization": r.entry.details.get("quantization"),
                    "flagged_slower_than_fp32": bool(r.entry.details.get("slower_than_fp32")),
                    "digits_accuracy": accuracy(load(digits.bundle, d.entry), Xte, yte),
                    "digits_validation_passed": d.report.passed,
                })
    for row in rows:
        base = next(b for b in rows if b["format"] == row["format"] and b["precision"] == "fp32")
        row["speedup_vs_fp32"] = round(base["latency_ms"] / row["latency_ms"], 2)
        row["size_ratio_vs_fp32"] = round(base["size_bytes"] / row["size_bytes"], 2)
        row["accuracy_delta_points"] = round(100 * (row["digits_accuracy"] - base["digits_accuracy"]), 2)
        row["accuracy_delta_vs_source_points"] = round(100 * (row["digits_accuracy"] - source_acc), 2)
        row["targets_met"] = targets_met(row)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "models": {"latency_and_size": "small_cnn() 3x96x96 (benchmarks/models.py)",
                   "accuracy": "train_digits_cnn() on digits, 397 held-out test images"},
        "threads": 1, "batch": 1, "runs": args.runs, "timing": "interleaved per format, medians",
        "source_digits_accuracy": source_acc, "targets": TARGETS, "rows": rows,
    }, indent=2))
    print_rows(rows, source_acc)
    print(f"wrote {RESULTS}")


def targets_met(row: dict) -> dict[str, bool] | None:
    drop_ok = -row["accuracy_delta_points"] <= TARGETS["max_accuracy_drop_points"]
    if row["precision"] == "int8":
        return {"size": row["size_ratio_vs_fp32"] >= TARGETS["int8_size_ratio"],
                "speed": row["speedup_vs_fp32"] >= TARGETS["int8_speedup"], "accuracy": drop_ok}
    if row["precision"] == "fp16":  # "about 2x": within 10%
        return {"size": row["size_ratio_vs_fp32"] >= 0.9 * TARGETS["fp16_size_ratio"], "accuracy": drop_ok}
    return None


def print_rows(rows: list[dict], source_acc: float) -> None:
    print("| format | precision | size KiB | latency ms | speed-up vs fp32 | size ratio vs fp32 | digits acc | acc Δ vs fp32 | targets |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        met = r["targets_met"]
        verdict = "–" if met is None else ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items())
        if r["flagged_slower_than_fp32"]:
            verdict += " (flagged slower_than_fp32)"
        print(f"| {r['format']} | {r['precision']} | {r['size_bytes'] / 1024:.1f} | {r['latency_ms']:.3f} | "
              f"{r['speedup_vs_fp32']:.2f}× | {r['size_ratio_vs_fp32']:.2f}× | {100 * r['digits_accuracy']:.2f}% | "
              f"{r['accuracy_delta_points']:+.2f} pt | {verdict} |")
    print(f"source (PyTorch) digits accuracy: {100 * source_acc:.2f}%")


if __name__ == "__main__":
    main()
