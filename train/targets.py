"""Which task a target supports, and refusing a task that does not fit it."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeml.errors import DataError, UsageError

from .options import TaskKind

MAX_CLASSES = 50  # more distinct values than this in a float target reads as a continuous quantity


def resolve_task(y: Any, task: TaskKind | None, target: str | None) -> TaskKind:
    """The task to train for: the given one after checking it fits the target, else inferred."""
    if y is None:
        if task not in (None, TaskKind.CLUSTERING):
            raise UsageError(f"--task {task.value} needs a target: pass --target COLUMN")
        return TaskKind.CLUSTERING
    task = task or _infer(y)
    CHECKS[task](y, target or "target")
    return task


def _infer(y: Any) -> TaskKind:
    """Numbers with fractions or many distinct values: regression; strings, bools, few integers: classification."""
    values = np.asarray(y)
    if values.dtype.kind in "fc" and not _integral(values):
        return TaskKind.REGRESSION
    if values.dtype.kind in "iuf" and _n_unique(y) > MAX_CLASSES:
        return TaskKind.REGRESSION
    return TaskKind.CLASSIFICATION


def _check_classification(y: Any, name: str) -> None:
    n = _n_unique(y)
    if n < 2:
        raise DataError(f"target {name!r} has one class ({_first(y)!r}); classification needs at least two")
    values = np.asarray(y)
    if values.dtype.kind in "fc" and not _integral(values) and n > MAX_CLASSES:
        raise DataError(f"target {name!r} is a continuous number ({n} distinct values); use --task regression")
    if n > MAX_CLASSES and n > len(values) // 2:
        raise DataError(f"target {name!r} has {n} distinct values in {len(values)} rows, too many classes to learn; "
                        "use --task regression for a quantity, or group the classes")


def _check_regression(y: Any, name: str) -> None:
    values = np.asarray(y)
    if values.dtype.kind not in "iufb":
        raise DataError(f"target {name!r} holds strings ({_first(y)!r}, ...); regression needs numbers: use --task classification")
    if _n_unique(y) < 2:
        raise DataError(f"target {name!r} is constant ({_first(y)!r}); there is nothing to learn")


def _check_clustering(y: Any, name: str) -> None:
    """Clustering ignores the target (it is kept out of the features)."""


CHECKS = {TaskKind.CLASSIFICATION: _check_classification, TaskKind.REGRESSION: _check_regression,
          TaskKind.CLUSTERING: _check_clustering}


def _integral(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(np.all(finite == np.round(finite)))


def _n_unique(y: Any) -> int:
    return int(len(np.unique(np.asarray(y).astype(str))))


def _first(y: Any) -> Any:
    v = np.asarray(y)[0]
    return v.item() if isinstance(v, np.generic) else v
