"""Model zoo: real-size architectures through every format x precision of `edgeml convert`.

For each model (benchmarks/zoo_models.py: ResNet-18, MobileNetV3-Small, ViT-Tiny trained briefly on
scikit-learn's digits as 3x32x32 images; a MiniLM-L6-size encoder with random weights on random token
ids) and each format (onnx, openvino, tflite), one `edgeml convert` run at fp32, fp16 and int8 (partial
bundles: a failed target is listed with its reason). Per artifact:
  size x      fp32 size / artifact size (same format)
  speed x     fp32 median / artifact median: batch 1, one thread, the format's own runtime, fp32 and the
              artifact timed interleaved in one loop (order alternating), medians compared
  metric      classification: accuracy drop in points against the source on held-out digits; encoder:
              mean cosine to the source's embeddings
  recipe      the int8 recipe kept, and how many were tried (convert/quantize/)
  convert s   wall time of the format's conversion (all three precisions, validation included)
The machine is shared: read the ratios, not the absolute times.

    python benchmarks/model_zoo.py [--quick] [--runs 100] [--epochs 2]   # writes benchmarks/results/model_zoo.json

--quick: ResNet-18 and the MiniLM-size encoder only, one training epoch.
Targets (issue 12): CNN int8 within 1 point of fp32 top-1 on every runtime and >= 3.5x smaller; encoder
int8 cosine >= 0.98 on ONNX and OpenVINO; TFLite artifacts for at least fp32 and fp16 of transformers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import zoo_models as zm  # noqa: E402

FORMATS = ["onnx", "openvino", "tflite"]
PRECISIONS = ["fp32", "fp16", "int8"]
RESULTS = Path(__file__).parent / "results" / "model_zoo.json"
IMAGE_MODELS = {"resnet18": zm.resnet18, "mobilenet_v3_small": zm.mobilenet_v3_small, "vit_tiny": zm.ViT}
QUICK = ("resnet18", "minilm_l6_size")


def export(model, example: np.ndarray, path: Path) -> Path:
    import torch

    program = torch.export.export(model, (torch.from_numpy(example),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


def convert(source: Path, out: Path, fmt: str, calibration: Path, validation: Path, task: str):
    from edgeml.convert.options import ConvertOptions, Precision, Task
    from edgeml.convert.pipeline import convert as run

    options = ConvertOptions(source=str(source), out=out, name=out.name, version="1", formats=[fmt],
                             precisions=[Precision(p) for p in PRECISIONS], calibration=calibration,
                             validation=validation, task=Task(task), latency_runs=5, force=True)
    if task == "classification":
        options.target = "label"
    started = time.perf_counter()
    try:
        result = run(options)
    except Exception as exc:  # every target failed: reported, the zoo goes on
        return None, time.perf_counter() - started, str(exc)[:300]
    return result, time.perf_counter() - started, None


def interleaved(fp32, other, feeds: dict[str, np.ndarray], runs: int) -> tuple[float, float]:
    for s in (fp32, other):
        for _ in range(5):
            s.run(feeds)
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(runs):
        for j in ((0, 1) if i % 2 == 0 else (1, 0)):
            s = (fp32, other)[j]
            t0 = time.perf_counter()
            s.run(feeds)
            times[j].append(time.perf_counter() - t0)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def load(bundle: Path, entry):
    from edgeml.runtime.backends import BackendOptions, get_backend

    return get_backend(entry.backend).load(bundle / entry.path, BackendOptions(threads=1, precision=entry.precision))


def rows_for(name: str, fmt: str, result, seconds: float, error: str | None, feeds: dict, runs: int) -> list[dict]:
    if result is None:
        return [{"model": name, "format": fmt, "precision": p, "status": f"failed: {error}"} for p in PRECISIONS]
    by_precision = {r.entry.precision: r for r in result.results}
    rows = [{"model": name, "format": fmt, "precision": f.precision, "status": f"failed ({f.stage}): {f.reason[:160]}"}
            for f in result.failed]
    base = by_precision.get("fp32")
    base_session = load(result.bundle, base.entry) if base else None
    for p, r in sorted(by_precision.items(), key=lambda kv: PRECISIONS.index(kv[0])):
        v, d = r.report, r.entry.details
        row = {"model": name, "format": fmt, "precision": p, "status": "pass" if v.passed else "FAIL",
               "size_mb": round(r.entry.size / 2**20, 2), "convert_s": round(seconds, 1),
               "recipe": d.get("recipe") or d.get("quantization"), "attempts": len(d.get("attempts", [])) or None,
               "accuracy_delta_points": None if v.metric_delta is None else round(100 * v.metric_delta, 2),
               "top1_agreement": v.top1_agreement, "cosine_mean": getattr(v, "cosine_mean", None)}
        if base is not None:
            row["size_x"] = round(base.entry.size / r.entry.size, 2)
            batch = d.get("fixed_batch") or 1
            sample = {k: np.repeat(x[:1], batch, axis=0) for k, x in feeds.items()}
            session = base_session if p == "fp32" else load(result.bundle, r.entry)
            f32, other = interleaved(base_session, session, sample, runs)
            row.update(latency_ms=round(other, 3), fp32_latency_ms=round(f32, 3), speed_x=round(f32 / other, 2))
        rows.append(row)
    return rows


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 and the MiniLM-size encoder, one epoch")
    parser.add_argument("--runs", type=int, default=100, help="interleaved timing rounds per artifact")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the image models")
    parser.add_argument("--models", default=None, help="comma-separated subset")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else (list(QUICK) if args.quick else [*IMAGE_MODELS, "minilm_l6_size"])
    epochs = 1 if args.quick else args.epochs
    torch.set_num_threads(2)
    rows: list[dict] = []
    x, y = zm.digits_images()
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        np.savez(tmp / "img_cal.npz", input=x[:300], label=y[:300])
        np.savez(tmp / "img_val.npz", input=x[1500:], label=y[1500:])
        rng = np.random.default_rng(0)
        np.savez(tmp / "tok_cal.npz", input_ids=rng.integers(0, zm.VOCAB, (64, zm.SEQ)).astype(np.int64))
        np.savez(tmp / "tok_val.npz", input_ids=rng.integers(0, zm.VOCAB, (64, zm.SEQ)).astype(np.int64))
        for name in names:
            t0 = time.perf_counter()
            if name in IMAGE_MODELS:
                model = zm.train(IMAGE_MODELS[name](), x[:1500], y[:1500], epochs)
                with torch.no_grad():
                    acc = float((model(torch.from_numpy(x[1500:])).argmax(1).numpy() == y[1500:]).mean())
                source, data, task = export(model, x[:2], tmp / f"{name}.pt2"), ("img_cal.npz", "img_val.npz"), "classification"
                feeds = {"input": x[1500:1501]}
            else:
                torch.manual_seed(0)
                source, data, task, acc = export(zm.MiniLMEncoder().eval(), np.zeros((2, zm.SEQ), np.int64), tmp / f"{name}.pt2"), \
                    ("tok_cal.npz", "tok_val.npz"), "embedding", None
                feeds = {"input_ids": np.zeros((1, zm.SEQ), np.int64)}
            print(f"{name}: built in {time.perf_counter() - t0:.0f}s" + (f", source accuracy {acc:.3f}" if acc is not None else ""), flush=True)
            for fmt in FORMATS:
                result, seconds, error = convert(source, tmp / f"{name}-{fmt}", fmt, tmp / data[0], tmp / data[1], task)
                new = rows_for(name, fmt, result, seconds, error, feeds, args.runs)
                for row in new:
                    row["source_accuracy"] = acc
                rows += new
                print_rows(new)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"quick": args.quick, "epochs": epochs, "runs": args.runs, "threads": 1, "batch": 1,
                                   "timing": "fp32 and artifact interleaved, medians", "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        if not r["status"].startswith(("pass", "FAIL")):
            print(f"  {r['model']:<20} {r['format']:<9} {r['precision']:<5} {r['status']}")
            continue
        metric = (f"cos {r['cosine_mean']:.4f}" if r.get("cosine_mean") is not None
                  else f"acc Δ {r['accuracy_delta_points']:+.2f} pt" if r.get("accuracy_delta_points") is not None else "-")
        print(f"  {r['model']:<20} {r['format']:<9} {r['precision']:<5} {r['status']:<5} size x{r.get('size_x', 0):<5} "
              f"speed x{r.get('speed_x', 0):<5} {metric:<16} recipe {r['recipe']} ({r['attempts'] or 1} tried) "
              f"convert {r['convert_s']}s", flush=True)


if __name__ == "__main__":
    main()
