"""`edgeml train` with a hyperparameter search on a mid-sized tabular set: 1 process vs both cores.

The same search (same seed, same candidates, same folds) runs with --jobs 1 and --jobs 2 in one
process run, alternating, and the median wall times are compared; the accuracy of both must match.

    python benchmarks/train_search.py [--rows 20000] [--repeats 2] [--search random --trials 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def make_csv(path: Path, rows: int, seed: int = 0) -> Path:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=8, n_redundant=4, n_classes=2,
                               flip_y=0.03, random_state=seed)
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"f{i}" for i in range(X.shape[1])])
    frame["y"] = y
    frame.to_csv(path, index=False)
    return path


def run_once(csv: Path, out: Path, args: argparse.Namespace, jobs: int) -> dict:
    from edgeml.train.options import SearchKind, TrainOptions
    from edgeml.train.training import train

    options = TrainOptions(out=out, model=args.model, data=csv, target="y", search=SearchKind(args.search), trials=args.trials,
                           cv=args.cv, n_jobs=jobs, seed=0, force=True)
    start = time.perf_counter()
    result = train(options)
    total = time.perf_counter() - start
    s = result.summary
    return {"total_s": total, "search_s": s["search"]["seconds"], "cv_score": s["search"]["cv_score"],
            "accuracy": s["evaluation"]["metrics"]["accuracy"], "best_params": s["search"]["best_params"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--model", default="random_forest")
    parser.add_argument("--search", default="random", choices=["grid", "random", "bayes"])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    load_before = os.getloadavg()[0]  # other work on a shared machine takes cores away from jobs=2
    with tempfile.TemporaryDirectory() as tmp:
        csv = make_csv(Path(tmp) / "data.csv", args.rows)
        for r in range(args.repeats):
            for jobs in (1, 2) if r % 2 == 0 else (2, 1):  # alternate the order: drift on a shared machine hits both
                runs[jobs].append(run_once(csv, Path(tmp) / f"run-{jobs}", args, jobs))
                print(f"repeat {r + 1}, jobs={jobs}: search {runs[jobs][-1]['search_s']:.1f} s, total {runs[jobs][-1]['total_s']:.1f} s")
    med = {j: {k: statistics.median(x[k] for x in runs[j]) for k in ("search_s", "total_s")} for j in runs}
    same = runs[1][0]["best_params"] == runs[2][0]["best_params"] and runs[1][0]["accuracy"] == runs[2][0]["accuracy"]
    result = {
        "benchmark": "train_search", "rows": args.rows, "features": 20, "model": args.model, "search": args.search,
        "candidates": args.trials, "cv": args.cv, "repeats": args.repeats, "cores": os.cpu_count(), "machine": platform.machine(),
        "jobs_1": med[1], "jobs_2": med[2],
        "speedup_search": med[1]["search_s"] / med[2]["search_s"], "speedup_total": med[1]["total_s"] / med[2]["total_s"],
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "same_result": same, "accuracy": runs[2][0]["accuracy"], "best_params": runs[2][0]["best_params"],
    }
    from edgeml.table import print_table

    print_table(f"edgeml train --search {args.search} ({args.trials} candidates x {args.cv} folds), {args.model}, {args.rows} rows",
                ["jobs", "search s (median)", "total s (median)"],
                [[1, med[1]["search_s"], med[1]["total_s"]], [2, med[2]["search_s"], med[2]["total_s"]],
                 ["speed-up", result["speedup_search"], result["speedup_total"]]])
    print(f"same best parameters and accuracy with 1 and 2 jobs: {same}; "
          f"1-min load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_search.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {RESULTS / 'train_search.json'}")


if __name__ == "__main__":
    main()
