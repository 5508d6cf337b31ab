"""Hyperparameter search on a Ray cluster: `edgeml train … --search random|bayes --ray ADDRESS|auto`.

Each candidate is one Ray Tune trial that cross-validates the pipeline on the same folds the local
search uses (the data travels once, through the object store); random search samples Tune's own
distributions, bayes runs Optuna's TPE inside Tune (OptunaSearch). The result is the same
`SearchResult` as a local search: best parameters, their mean/std CV score and every trial; the
best parameters are then fitted on the whole training split here, on the driver.

`--ray auto` joins the cluster this machine belongs to (RAY_ADDRESS or a local `ray start`);
`--ray HOST:PORT` a given head node. A cluster that cannot be reached is one `Error:` line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from typing import Any

import numpy as np

from edgeml.errors import DataError, EdgeMLError, require

from .options import SearchKind, TrainOptions
from .progress import Reporter
from .search_result import SearchResult
from .space import Choice, FloatRange, IntRange, Param, Space

# One CPU per trial: Tune runs as many trials at once as the cluster has CPUs.
TRIAL_RESOURCES = {"cpu": 1}


class RayClusterError(EdgeMLError):
    reason = "unavailable"


def tune_space(space: Space, tune: Any) -> dict[str, Any]:
    """The neutral search space as Tune sampling primitives."""
    def one(p: Param) -> Any:
        if isinstance(p, Choice):
            return tune.choice(list(p.values))
        if isinstance(p, IntRange):
            return tune.lograndint(p.low, p.high + 1) if p.log else tune.randint(p.low, p.high + 1)
        return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    return {k: one(v) for k, v in space.items()}


def connect(address: str) -> Any:
    ray = require("ray", "ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return ray
    _probe(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError depending on what is wrong
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayClusterError(f"--ray {address}: cannot join the Ray cluster ({first}); start one with `ray start --head`") from None
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a head node that is not listening (ray.init would retry for minutes)."""
    import socket

    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        raise RayClusterError(f"--ray {address}: cannot join the Ray cluster ({exc}); start one with `ray start --head` "
                              "or give its HOST:PORT") from None


def _cross_validate(config: dict[str, Any], pipeline: Any, X: Any, y: Any, cv: Any, scoring: Any) -> None:
    """One Tune trial: the mean and std of the CV score of `config` (runs on a Ray worker)."""
    from ray import tune
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(clone(pipeline).set_params(**config), X, y, cv=cv, scoring=scoring, n_jobs=1)
    mean = float(np.nan_to_num(scores.mean(), nan=-np.inf))
    import ray

    tune.report({"score": mean, "std": float(scores.std()), "node": ray.get_runtime_context().get_node_id()})


def ray_search(pipeline: Any, space: Space, X: Any, y: Any, cv: Any, scoring: Any, options: TrainOptions,
               reporter: Reporter, address: str) -> Any:
    from sklearn.base import clone

    if options.search not in (SearchKind.RANDOM, SearchKind.BAYES):
        raise DataError(f"--ray runs random or bayes search; got --search {options.search.value}")
    if not space:
        raise DataError("--ray: this model has no hyperparameters to search")
    connect(address)
    from ray import tune

    search_alg = None
    if options.search == SearchKind.BAYES:
        from ray.tune.search.optuna import OptunaSearch

        require("optuna", "train")
        search_alg = OptunaSearch(seed=options.seed)
    else:
        from ray.tune.search import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=options.seed)
    trainable = tune.with_resources(tune.with_parameters(_cross_validate, pipeline=pipeline, X=X, y=y, cv=cv,
                                                         scoring=scoring), TRIAL_RESOURCES)
    with tempfile.TemporaryDirectory(prefix="edgeml-ray-") as storage:
        tuner = tune.Tuner(trainable, param_space=tune_space(space, tune),
                           tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=options.trials,
                                                       search_alg=search_alg),
                           run_config=tune.RunConfig(storage_path=storage, name="search", verbose=0))
        # Tune prints its experiment tables to stdout whatever the verbosity: keep stdout for --json.
        with reporter.bar(f"{options.search.value} search on Ray: {options.trials} trials x {options.cv} folds", None), \
                contextlib.redirect_stdout(sys.stderr):
            grid = tuner.fit()
        errors = [r.error for r in grid if r.error is not None]
        if len(errors) == len(grid):
            raise RayClusterError(f"every Ray trial failed; the first: {str(errors[0]).strip().splitlines()[-1]}")
        done = [r for r in grid if r.error is None and "score" in r.metrics]
        trials = [{"params": dict(r.config), "score": r.metrics["score"], "node": r.metrics["node"]} for r in done]
        best = max(done, key=lambda r: r.metrics["score"])
    with reporter.bar("fitting the best parameters on the training split", None):
        fitted = clone(pipeline).set_params(**best.config).fit(X, y)
    return SearchResult(fitted, options.search, "", dict(best.config), float(best.metrics["score"]),
                        float(best.metrics["std"]), len(trials), 0.0, trials)
