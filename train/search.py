"""Cross-validation and hyperparameter search: none, grid, random (scikit-learn) and bayes (Optuna).

Folds (grid/random: every candidate x fold) run in parallel processes with `n_jobs` (-1 = all cores);
the Optuna search runs its trials one after another, each cross-validated in parallel.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np

from edgeml.errors import DataError, MissingDependencyError

from .options import SearchKind, TaskKind, TrainOptions
from .progress import Reporter
from .search_result import SearchResult
from .space import Space, distribution, grid_values, suggest


def silhouette_scorer(estimator: Any, X: Any, y: Any = None) -> float:
    """Silhouette of the clusters a fitted Pipeline(preprocessing, clusterer) assigns to X."""
    from sklearn.metrics import silhouette_score

    labels = estimator.predict(X)
    if not 1 < len(np.unique(labels)) < len(labels):
        return -1.0
    return float(silhouette_score(estimator[:-1].transform(X), labels))


SCORING: dict[TaskKind, str | Callable] = {TaskKind.CLASSIFICATION: "accuracy", TaskKind.REGRESSION: "r2",
                                           TaskKind.CLUSTERING: silhouette_scorer}


def scoring_name(task: TaskKind) -> str:
    s = SCORING[task]
    return s if isinstance(s, str) else "silhouette"


def splitter(task: TaskKind, y: Any, options: TrainOptions) -> Any:
    from sklearn.model_selection import KFold, StratifiedKFold

    if options.cv < 2:
        raise DataError(f"--cv {options.cv}: cross-validation needs at least 2 folds")
    if task == TaskKind.CLASSIFICATION:
        smallest = int(np.unique(np.asarray(y).astype(str), return_counts=True)[1].min())
        if smallest < options.cv:
            raise DataError(f"the smallest class has {smallest} training samples, fewer than --cv {options.cv}; lower --cv or add data")
        return StratifiedKFold(options.cv, shuffle=True, random_state=options.seed)
    return KFold(options.cv, shuffle=True, random_state=options.seed)


def run_search(pipeline: Any, space: Space, X: Any, y: Any, task: TaskKind, options: TrainOptions, reporter: Reporter) -> SearchResult:
    start = time.perf_counter()
    cv = splitter(task, y, options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if options.ray:
            from .ray_search import ray_search

            result = ray_search(pipeline, space, X, y, cv, SCORING[task], options, reporter, options.ray)
        else:
            result = SEARCHES[options.search](pipeline, space, X, y, cv, SCORING[task], options, reporter)
    result.scoring = scoring_name(task)
    result.seconds = time.perf_counter() - start
    return result


def _none(pipeline, space, X, y, cv, scoring, options, reporter) -> SearchResult:
    from sklearn.model_selection import cross_val_score

    with reporter.bar(f"{options.cv}-fold cross-validation", None):
        scores = cross_val_score(pipeline, X, y, cv=cv, scoring=scoring, n_jobs=options.n_jobs)
    with reporter.bar("fitting on the training split", None):
        fitted = pipeline.fit(X, y)
    return SearchResult(fitted, SearchKind.NONE, "", {}, float(scores.mean()), float(scores.std()), 1, 0.0)


def _sklearn_search(cls_name: str, kind: SearchKind, params_of: Callable[[Space, TrainOptions], dict]) -> Callable:
    def run(pipeline, space, X, y, cv, scoring, options, reporter) -> SearchResult:
        import sklearn.model_selection as ms

        params = params_of(space, options)
        extra = {"n_iter": options.trials, "random_state": options.seed} if kind == SearchKind.RANDOM else {}
        search = getattr(ms, cls_name)(pipeline, params, cv=cv, scoring=scoring, n_jobs=options.n_jobs, refit=True, **extra)
        n = len(ms.ParameterGrid(params)) if kind == SearchKind.GRID else options.trials
        with reporter.bar(f"{kind.value} search: {n} candidates x {options.cv} folds", None):
            search.fit(X, y)
        res = search.cv_results_
        trials = [{"params": p, "score": float(s)} for p, s in zip(res["params"], res["mean_test_score"])]
        return SearchResult(search.best_estimator_, kind, "", search.best_params_, float(search.best_score_),
                            float(res["std_test_score"][search.best_index_]), len(trials), 0.0, trials)

    return run


def _bayes(pipeline, space, X, y, cv, scoring, options, reporter) -> SearchResult:
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("optuna", "train") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stds: dict[int, float] = {}

    def objective(trial: Any) -> float:
        params = {name: suggest(trial, name, p) for name, p in space.items()}
        scores = cross_val_score(clone(pipeline).set_params(**params), X, y, cv=cv, scoring=scoring, n_jobs=options.n_jobs)
        stds[trial.number] = float(scores.std())
        return float(np.nan_to_num(scores.mean(), nan=-np.inf))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=options.seed))
    with reporter.bar(f"bayes search (Optuna TPE): {options.trials} trials x {options.cv} folds", options.trials) as advance:
        study.optimize(objective, n_trials=options.trials, callbacks=[lambda *_: advance()])
    best = study.best_trial
    with reporter.bar("fitting the best parameters on the training split", None):
        fitted = clone(pipeline).set_params(**best.params).fit(X, y)
    trials = [{"params": t.params, "score": t.value} for t in study.trials]
    return SearchResult(fitted, SearchKind.BAYES, "", best.params, float(best.value), stds[best.number], len(trials), 0.0, trials)


def _grid_params(space: Space, options: TrainOptions) -> dict:
    return {k: grid_values(p) for k, p in space.items()}


def _random_params(space: Space, options: TrainOptions) -> dict:
    return {k: distribution(p) for k, p in space.items()}


SEARCHES: dict[SearchKind, Callable[..., SearchResult]] = {
    SearchKind.NONE: _none,
    SearchKind.GRID: _sklearn_search("GridSearchCV", SearchKind.GRID, _grid_params),
    SearchKind.RANDOM: _sklearn_search("RandomizedSearchCV", SearchKind.RANDOM, _random_params),
    SearchKind.BAYES: _bayes,
}
