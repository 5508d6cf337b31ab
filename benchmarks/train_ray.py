"""Random search as Ray Tune trials on a local two-node Ray cluster vs the local (joblib) search.

Both search the same random-forest space on the same data and folds in the same run; trials per
minute and the best CV score are printed with their ratio. On one 2-core machine the two Ray nodes
share the cores, so this measures Ray's overhead, not a speed-up: the gain comes from more machines.

    python benchmarks/train_ray.py [--trials 8] [--rows 5000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(cpus_per_node: int) -> tuple[str, Path]:
    port = _free_port()
    temp = Path(f"/tmp/edgeml-ray-bench-{port}")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = [f"--num-cpus={cpus_per_node}", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", *common],
                   check=True, env=env, capture_output=True)
    subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", *common], check=True, env=env, capture_output=True)
    return f"127.0.0.1:{port}", temp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    from sklearn.datasets import make_classification
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from edgeml.train.models import MODELS
    from edgeml.train.options import SearchKind, TaskKind, TrainOptions
    from edgeml.train.progress import Reporter
    from edgeml.train.ray_search import ray_search
    from edgeml.train.search import SCORING, run_search, splitter

    X, y = make_classification(n_samples=args.rows, n_features=20, n_informative=10, random_state=0)
    spec = MODELS["random_forest"]
    options = TrainOptions(out=Path("unused"), model="random_forest", search=SearchKind.RANDOM, trials=args.trials,
                           cv=3, seed=0, n_jobs=-1)
    space = {f"model__{k}": v for k, v in spec.space.items()}

    def pipeline():
        return Pipeline([("scale", StandardScaler()), ("model", spec.build(TaskKind.CLASSIFICATION, options))])

    start = time.perf_counter()
    local = run_search(pipeline(), space, X, y, TaskKind.CLASSIFICATION, options, Reporter(quiet=True))
    local_s = time.perf_counter() - start
    address, temp = start_cluster(cpus_per_node=1)
    try:
        start = time.perf_counter()
        cv = splitter(TaskKind.CLASSIFICATION, y, options)
        remote = ray_search(pipeline(), space, X, y, cv, SCORING[TaskKind.CLASSIFICATION], options,
                            Reporter(quiet=True), address)
        ray_s = time.perf_counter() - start
    finally:
        import ray

        ray.shutdown()
        subprocess.run([shutil.which("ray") or "ray", "stop", "--force"], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
    nodes = len({t["node"] for t in remote.trials})
    print(f"random search, random forest, {args.rows} rows, {args.trials} candidates x 3 folds")
    print(f"  local (joblib, all cores)   {local_s:6.1f} s  {args.trials / local_s * 60:5.1f} trials/min  best cv {local.cv_score:.4f}")
    print(f"  Ray Tune, 2 nodes x 1 CPU   {ray_s:6.1f} s  {args.trials / ray_s * 60:5.1f} trials/min  best cv {remote.cv_score:.4f}"
          f"  (trials on {nodes} nodes)")
    print(f"trials/min ratio (Ray / local): {local_s / ray_s:.2f}")


if __name__ == "__main__":
    main()
