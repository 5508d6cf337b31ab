"""Bias check over a sensitive column: per-group metrics on the test split and the largest gaps.

Classification: accuracy, selection rate (share predicted as the positive class) and true-positive
rate per group; a gap (max - min over groups) above the threshold is flagged. Regression: MAE and
mean prediction per group; the MAE gap is flagged when it exceeds threshold x the overall MAE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgeml.errors import DataError, UsageError

from .options import TaskKind, TrainOptions

MAX_GROUPS = 30


@dataclass
class BiasReport:
    column: str
    positive_label: Any
    groups: list[dict[str, Any]]  # group, n, and one value per metric
    gaps: dict[str, float | None]
    threshold: float
    flagged: list[str]  # metrics whose gap exceeds the threshold

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "positive_label": self.positive_label, "groups": self.groups, "gaps": self.gaps,
                "largest_gap": max(((k, v) for k, v in self.gaps.items() if v is not None), key=lambda kv: kv[1], default=None),
                "threshold": self.threshold, "flagged": self.flagged}


def check_sensitive(groups: Any, column: str, task: TaskKind) -> None:
    if task == TaskKind.CLUSTERING:
        raise UsageError("--sensitive needs a classification or regression task (clustering has no ground truth)")
    n = len(np.unique(np.asarray(groups).astype(str)))
    if n > MAX_GROUPS:
        raise DataError(f"sensitive column {column!r} has {n} distinct values; give a categorical column (at most {MAX_GROUPS} groups)")


def bias_report(y_true: Any, y_pred: Any, groups: Any, task: TaskKind, classes: list[Any] | None, options: TrainOptions) -> BiasReport:
    groups = np.asarray(groups).astype(str)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return BUILDERS[task](y_true, y_pred, groups, classes, options)


def _positive(classes: list[Any], wanted: str | None) -> Any:
    if wanted is None:
        return classes[-1]
    match = [c for c in classes if str(c) == str(wanted)]
    if not match:
        raise UsageError(f"--positive-label {wanted!r} is not a class (classes: {', '.join(map(str, classes))})")
    return match[0]


def _classification(y_true, y_pred, groups, classes, options) -> BiasReport:
    positive = _positive(list(classes), options.positive_label)
    rows = []
    for g in np.unique(groups):
        t, p = y_true[groups == g], y_pred[groups == g]
        pos = t == positive
        rows.append({"group": g, "n": int(len(t)), "accuracy": _r(np.mean(t == p)), "selection_rate": _r(np.mean(p == positive)),
                     "tpr": _r(np.mean(p[pos] == positive)) if pos.any() else None})
    gaps = {m: _gap([r[m] for r in rows]) for m in ("accuracy", "selection_rate", "tpr")}
    flagged = [m for m, v in gaps.items() if v is not None and v > options.bias_threshold]
    return BiasReport(options.sensitive or "", _plain(positive), rows, gaps, options.bias_threshold, flagged)


def _regression(y_true, y_pred, groups, classes, options) -> BiasReport:
    overall = float(np.mean(np.abs(y_true - y_pred))) or 1.0
    rows = [{"group": g, "n": int((groups == g).sum()), "mae": _r(np.mean(np.abs(y_true[groups == g] - y_pred[groups == g]))),
             "mean_prediction": _r(np.mean(y_pred[groups == g]))} for g in np.unique(groups)]
    gaps = {"mae": _gap([r["mae"] for r in rows]), "mean_prediction": _gap([r["mean_prediction"] for r in rows])}
    flagged = ["mae"] if gaps["mae"] is not None and gaps["mae"] > options.bias_threshold * overall else []
    return BiasReport(options.sensitive or "", None, rows, gaps, options.bias_threshold, flagged)


BUILDERS: dict[TaskKind, Callable[..., BiasReport]] = {TaskKind.CLASSIFICATION: _classification, TaskKind.REGRESSION: _regression}


def _gap(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return _r(max(present) - min(present)) if len(present) >= 2 else None


def _r(v: float) -> float:
    return round(float(v), 6)


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
