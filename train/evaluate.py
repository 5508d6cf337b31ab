"""Evaluation on the held-out test split: task metrics, curves for the report, feature importance."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .options import ExplainKind, TaskKind
from .search import silhouette_scorer

IMPORTANCE_MAX_ROWS = 1000
IMPORTANCE_REPEATS = 3
ROC_MAX_CLASSES = 10
SHAP_MAX_ROWS = 100


@dataclass
class Evaluation:
    metrics: dict[str, float | None]
    confusion: dict[str, Any] | None = None  # {"labels": [...], "matrix": [[...]]}
    roc: list[dict[str, Any]] = field(default_factory=list)  # per class: label, fpr, tpr, auc
    importance: list[dict[str, Any]] = field(default_factory=list)  # feature, mean, std (sorted, largest first)
    importance_method: str = "permutation"


def evaluate(model: Any, X: Any, y: Any, task: TaskKind, n_jobs: int, seed: int,
             explain: ExplainKind = ExplainKind.PERMUTATION) -> Evaluation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = EVALUATORS[task](model, X, y)
        ev.importance, ev.importance_method = importance(model, X, y, task, n_jobs, seed, explain)
    return ev


def _classification(model: Any, X: Any, y: Any) -> Evaluation:
    from sklearn import metrics as m

    y = np.asarray(y)
    pred = model.predict(X)
    labels = list(model.classes_)
    out: dict[str, float | None] = {
        "accuracy": m.accuracy_score(y, pred),
        "precision": m.precision_score(y, pred, average="macro", zero_division=0),
        "recall": m.recall_score(y, pred, average="macro", zero_division=0),
        "f1": m.f1_score(y, pred, average="macro", zero_division=0),
        "roc_auc": None,
    }
    roc: list[dict[str, Any]] = []
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        out["roc_auc"], roc = _roc(y, proba, labels)
    confusion = {"labels": [_plain(l) for l in labels], "matrix": m.confusion_matrix(y, pred, labels=labels).tolist()}
    return Evaluation({k: _round(v) for k, v in out.items()}, confusion, roc)


def _roc(y: np.ndarray, proba: np.ndarray, labels: list[Any]) -> tuple[float | None, list[dict[str, Any]]]:
    from sklearn.metrics import roc_auc_score, roc_curve

    present = [i for i, l in enumerate(labels) if (y == l).any() and (y != l).any()]
    if len(labels) == 2 and len(present) == 2:
        fpr, tpr, _ = roc_curve(y == labels[1], proba[:, 1])
        auc = float(roc_auc_score(y == labels[1], proba[:, 1]))
        return auc, [{"label": _plain(labels[1]), "fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": auc}]
    if len(present) < 2:
        return None, []
    curves = []
    for i in present[:ROC_MAX_CLASSES]:
        fpr, tpr, _ = roc_curve(y == labels[i], proba[:, i])
        curves.append({"label": _plain(labels[i]), "fpr": fpr.tolist(), "tpr": tpr.tolist(),
                       "auc": float(roc_auc_score(y == labels[i], proba[:, i]))})
    auc = float(np.mean([roc_auc_score(y == labels[i], proba[:, i]) for i in present]))  # one-vs-rest, macro
    return auc, curves


def _regression(model: Any, X: Any, y: Any) -> Evaluation:
    from sklearn import metrics as m

    pred = model.predict(X)
    return Evaluation({"mae": _round(m.mean_absolute_error(y, pred)), "rmse": _round(float(np.sqrt(m.mean_squared_error(y, pred)))),
                       "r2": _round(m.r2_score(y, pred))})


def _clustering(model: Any, X: Any, y: Any) -> Evaluation:
    labels = model.predict(X)
    return Evaluation({"silhouette": _round(silhouette_scorer(model, X)), "clusters": int(len(np.unique(labels)))})


EVALUATORS: dict[TaskKind, Callable[[Any, Any, Any], Evaluation]] = {
    TaskKind.CLASSIFICATION: _classification, TaskKind.REGRESSION: _regression, TaskKind.CLUSTERING: _clustering,
}


def importance(model: Any, X: Any, y: Any, task: TaskKind, n_jobs: int, seed: int,
               method: ExplainKind = ExplainKind.PERMUTATION) -> tuple[list[dict[str, Any]], str]:
    """Per-feature importance by `method` (--explain); ([], "none") when switched off.

    SHAP runs only when asked (it is several times slower than permutation importance) and quietly
    (no progress bar); a pipeline SHAP cannot explain falls back to permutation, and the method
    actually used is what the report shows.
    """
    if method == ExplainKind.NONE:
        return [], ExplainKind.NONE.value
    n = min(len(X), IMPORTANCE_MAX_ROWS)
    Xs = X.iloc[:n] if hasattr(X, "iloc") else X[:n]
    ys = None if y is None else np.asarray(y)[:n]
    names = [str(c) for c in X.columns] if hasattr(X, "columns") else [f"x{i}" for i in range(X.shape[1])]
    if method == ExplainKind.SHAP:
        shap_values = _shap(model, Xs, names)
        if shap_values:
            return shap_values, ExplainKind.SHAP.value
    from sklearn.inspection import permutation_importance

    scoring = silhouette_scorer if task == TaskKind.CLUSTERING else None
    result = permutation_importance(model, Xs, ys, scoring=scoring, n_repeats=IMPORTANCE_REPEATS, random_state=seed, n_jobs=n_jobs)
    rows = [{"feature": f, "mean": _round(m), "std": _round(s)} for f, m, s in zip(names, result.importances_mean, result.importances_std)]
    return sorted(rows, key=lambda r: -(r["mean"] or 0.0)), ExplainKind.PERMUTATION.value


def _shap(model: Any, X: Any, names: list[str]) -> list[dict[str, Any]]:
    """Mean |SHAP value| per raw feature (model-agnostic explainer on a small sample); [] if it fails."""
    import logging

    import shap

    logging.getLogger("shap").setLevel(logging.ERROR)
    try:
        sample = X.iloc[:SHAP_MAX_ROWS] if hasattr(X, "iloc") else X[:SHAP_MAX_ROWS]
        explanation = shap.Explainer(model.predict, sample)(sample, silent=True)
        values = np.abs(np.asarray(explanation.values)).reshape(len(sample), len(names), -1).mean(axis=(0, 2))
    except Exception:  # shap cannot explain every pipeline (e.g. string columns); fall back to permutation
        return []
    rows = [{"feature": f, "mean": _round(v), "std": None} for f, v in zip(names, values)]
    return sorted(rows, key=lambda r: -(r["mean"] or 0.0))


def _round(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if not np.isfinite(v) else round(v, 6)


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
