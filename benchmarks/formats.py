"""Format x precision benchmark: size, single-thread latency on each format's own runtime, speed-up and
size ratio against the same format's fp32, and accuracy delta on sklearn's digits.

Two models, both converted with `edgeml convert`'s pipeline (so every artifact is also validated):
  * cnn96  - a small CNN on 3x96x96 inputs (random init; for size and latency),
  * digits - a small CNN trained on sklearn's digits (1x8x8; for the accuracy delta against the source).
Run: python benchmarks/formats.py [--runs 100]. Writes benchmarks/results/formats.json. The machine is
shared: medians of many runs and ratios within one run are reported; expect ~10-20% noise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

FORMATS = ["onnx", "tflite", "openvino"]
PRECISIONS = ["fp32", "fp16", "int8"]
RESULTS = Path(__file__).parent / "results" / "formats.json"


def cnn96():
    import torch

    def block(i, o):
        return [torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.BatchNorm2d(o), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]

    torch.manual_seed(0)
    return torch.nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64), *block(64, 64),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()


def digits_cnn():
    import torch
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, padding=1),
                                torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    xt, yt = torch.from_numpy(X[:1200]), torch.from_numpy(y[:1200])
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval(), X, y


def export(model, shape, path: Path) -> Path:
    import torch

    program = torch.export.export(model, (torch.randn(2, *shape),), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    torch.export.save(program, str(path))
    return path


def convert(source: Path, out: Path, calibration: Path, validation: Path | None):
    from edgeml.convert.options import ConvertOptions, Precision
    from edgeml.convert.pipeline import convert as run

    options = ConvertOptions(source=str(source), out=out, name=source.stem, version="1", formats=FORMATS,
                             precisions=[Precision(p) for p in PRECISIONS], calibration=calibration,
                             validation=validation, allow_degraded=True, latency_runs=5)
    return run(options)


def latency(bundle: Path, entry, sample: np.ndarray, runs: int) -> float:
    from edgeml.convert.execution import measure_latency
    from edgeml.runtime.backends import BackendOptions, get_backend

    session = get_backend(entry.backend).load(bundle / entry.path, BackendOptions(threads=1, precision=entry.precision))
    return float(measure_latency(session.run, {session.input_names[0]: sample}, runs=runs, warmup=10)["median_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "cal96.npz", input=rng.standard_normal((64, 3, 96, 96)).astype(np.float32))
        big = convert(export(cnn96(), (3, 96, 96), tmp / "cnn96.pt2"), tmp / "b96", tmp / "cal96.npz", None)
        model, X, y = digits_cnn()
        np.savez(tmp / "dcal.npz", input=X[:1200][::4])
        np.savez(tmp / "dval.npz", input=X[1200:], label=y[1200:])
        small = convert(export(model, (1, 8, 8), tmp / "digits.pt2"), tmp / "bd", tmp / "dcal.npz", tmp / "dval.npz")
        accuracy = {r.entry.key: r.report for r in small.results}
        sample = rng.standard_normal((1, 3, 96, 96)).astype(np.float32)
        for r in big.results:
            e = r.entry
            rep = accuracy[e.key]
            rows.append({"format": e.format, "precision": e.precision, "size_bytes": e.size,
                         "latency_ms": latency(big.bundle, e, sample, args.runs), "validation_passed": r.report.passed,
                         "digits_accuracy": rep.metric_artifact, "digits_accuracy_delta": rep.metric_delta,
                         "digits_passed": rep.passed, "quantization": e.details.get("quantization")})
    for row in rows:
        base = next(b for b in rows if b["format"] == row["format"] and b["precision"] == "fp32")
        row["speedup_vs_fp32"] = round(base["latency_ms"] / row["latency_ms"], 2)
        row["size_ratio_vs_fp32"] = round(base["size_bytes"] / row["size_bytes"], 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"model": "cnn96 (3x96x96, 4 conv blocks) + digits CNN", "threads": 1,
                                   "runs": args.runs, "rows": rows}, indent=2))
    print("| format | precision | size KiB | latency ms | speed-up vs fp32 | size ratio vs fp32 | digits acc Δ |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        delta = "-" if r["digits_accuracy_delta"] is None else f"{r['digits_accuracy_delta'] * 100:+.1f} pt"
        print(f"| {r['format']} | {r['precision']} | {r['size_bytes'] / 1024:.1f} | {r['latency_ms']:.3f} | "
              f"{r['speedup_vs_fp32']:.2f}x | {r['size_ratio_vs_fp32']:.2f}x | {delta} |")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
