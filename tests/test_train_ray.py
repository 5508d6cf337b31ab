"""Hyperparameter search as Ray Tune trials on a real two-node local Ray cluster (a head and a second node)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")  # part of edgeml[ray]; CI installs it (scripts/setup.sh installs .[all,test])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` plus a second `ray start --address` node, one CPU each, torn down after."""
    port = _free_port()
    temp = Path(f"/tmp/edgeml-ray-{port}")  # Ray's socket paths must stay short: not under pytest's tmp_path
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
                    "--node-ip-address=127.0.0.1", *common], check=True, env=env, capture_output=True, timeout=180)
    try:
        subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common],
                       check=True, env=env, capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _search(kind: str, address: str | None, trials: int = 4):
    from sklearn.datasets import load_iris

    from edgeml.train.models import MODELS
    from edgeml.train.options import SearchKind, TaskKind, TrainOptions
    from edgeml.train.progress import Reporter
    from edgeml.train.ray_search import ray_search
    from edgeml.train.search import SCORING, run_search, splitter
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    spec = MODELS["random_forest"]
    options = TrainOptions(out=Path("unused"), model="random_forest", dataset="iris", search=SearchKind(kind), trials=trials,
                           cv=3, seed=0, n_jobs=1)
    space = {f"model__{k}": v for k, v in spec.space.items()}
    pipeline = Pipeline([("scale", StandardScaler()), ("model", spec.build(TaskKind.CLASSIFICATION, options))])
    if address is None:
        return run_search(pipeline, space, X, y, TaskKind.CLASSIFICATION, options, Reporter(quiet=True))
    cv = splitter(TaskKind.CLASSIFICATION, y, options)
    return ray_search(pipeline, space, X, y, cv, SCORING[TaskKind.CLASSIFICATION], options, Reporter(quiet=True), address)


def test_search_runs_as_ray_trials_on_both_nodes_with_the_local_results_contract(cluster):
    result = _search("random", cluster)
    kind = "random"
    local = _search(kind, None)
    assert result.candidates == 4 and len(result.trials) == 4
    assert set(result.to_dict()) == set(local.to_dict())  # same results contract as a local search
    assert set(result.best_params) == set(local.best_params)
    assert 0.8 < result.cv_score <= 1.0  # iris: a random forest cross-validates above 0.8 whatever the trial
    assert len({t["node"] for t in result.trials}) == 2  # trials ran on the head and on the second node
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    assert np.mean(result.estimator.predict(X) == y) > 0.9  # the best parameters, fitted on the driver


def test_edgeml_train_ray_runs_bayes_search_on_the_cluster(cluster, tmp_path, run_cli):
    import json

    result = run_cli("train", "--dataset", "iris", "--model", "random_forest", "--search", "bayes", "--trials", "4",
                     "--cv", "3", "--ray", cluster, "--explain", "none", "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    search = json.loads((tmp_path / "run" / "metrics.json").read_text())["search"]
    assert search["kind"] == "bayes" and search["candidates"] == 4 and search["cv_score"] > 0.8
    assert len({t["node"] for t in search["trials"]}) == 2
    assert json.loads(result.stdout)["convert"].startswith("edgeml convert")


def test_an_unreachable_cluster_is_one_clear_error(run_cli, tmp_path):
    from edgeml.errors import EdgeMLError
    from edgeml.train.ray_search import connect

    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(EdgeMLError, match="cannot join the Ray cluster"):
        connect(f"127.0.0.1:{_free_port()}")
    result = run_cli("train", "--dataset", "iris", "--model", "random_forest", "--search", "random", "--trials", "2",
                     "--ray", f"127.0.0.1:{_free_port()}", "--out", tmp_path / "run")
    assert result.exit_code != 0 and "Error: --ray" in result.stderr and "Traceback" not in result.stderr
