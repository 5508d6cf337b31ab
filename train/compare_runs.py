"""Old vs new model on the same data sets: the report of `edgeml train --from-fleet` and the rollout gate."""

from __future__ import annotations

from typing import Any

# the metric that decides "not worse", per task (higher is better for both)
PRIMARY = {"classification": "accuracy", "regression": "r2"}


def _metrics(task: str, y: Any, pred: Any) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score

    if task == "classification":
        return {"accuracy": float(accuracy_score(y, pred)), "f1_macro": float(f1_score(y, pred, average="macro"))}
    return {"r2": float(r2_score(y, pred)), "mae": float(mean_absolute_error(y, pred))}


def compare_runs(old_model: Any, new_model: Any, task: str, datasets: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """Per data set: both models' metrics and new - old. `not_worse` is judged on "original_test" only
    (held out from both models' training), on the task's primary metric."""
    primary = PRIMARY.get(task)
    if primary is None:
        from edgeml.errors import UsageError

        raise UsageError(f"comparing runs needs a classification or regression task, not {task}")
    out: dict[str, Any] = {"task": task, "primary_metric": primary, "datasets": {}}
    for name, (X, y) in datasets.items():
        if len(X) == 0:
            continue
        old, new = _metrics(task, y, old_model.predict(X)), _metrics(task, y, new_model.predict(X))
        out["datasets"][name] = {"rows": int(len(X)), "old": old, "new": new,
                                 "delta": {k: round(new[k] - old[k], 6) for k in old}}
    held = out["datasets"].get("original_test")
    out["not_worse"] = bool(held and held["new"][primary] >= held["old"][primary] - 1e-9)
    return out


def comparison_rows(comparison: dict[str, Any]) -> list[list[Any]]:
    """Table rows: data set, metric, old, new, delta."""
    return [[name, k, round(d["old"][k], 4), round(d["new"][k], 4), d["delta"][k]]
            for name, d in comparison["datasets"].items() for k in d["old"]]

