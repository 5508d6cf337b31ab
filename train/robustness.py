"""Robustness check: the test metric under input perturbations, reported beside the bias section.

- Gaussian noise on every numeric feature, with a standard deviation of `strength` x that feature's
  standard deviation on the training split (categorical and text columns are left as they are), at
  each of NOISE_STRENGTHS.
- FGSM (fast gradient sign method) for PyTorch models: x + eps * std * sign(d loss / d x), the
  worst-case step of size eps (in the same per-feature std units) at each of FGSM_EPSILONS.

The metric is accuracy for classification and R² for regression, computed on at most ROWS rows of
the test split (cheap: a few predictions; each noise strength averages NOISE_REPEATS draws). Clustering has no ground truth and gets no section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .options import TaskKind

NOISE_STRENGTHS = (0.1, 0.25, 0.5, 1.0)
FGSM_EPSILONS = (0.05, 0.1, 0.25)
ROWS = 300
NOISE_REPEATS = 5  # noise draws per strength, averaged (small test splits would otherwise be jumpy)
METRICS: dict[TaskKind, str] = {TaskKind.CLASSIFICATION: "accuracy", TaskKind.REGRESSION: "r2"}


@dataclass
class RobustnessReport:
    metric: str  # "accuracy" or "r2"
    rows: int
    baseline: float  # the metric on the unperturbed rows
    noise: list[dict[str, float]]  # {"strength", "value", "drop"}, strength in feature-std units
    fgsm: list[dict[str, float]] | None  # {"epsilon", "value", "drop"}; None for non-PyTorch models
    perturbed_features: int  # numeric features the noise touches

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "rows": self.rows, "baseline": self.baseline, "noise": self.noise,
                "fgsm": self.fgsm, "perturbed_features": self.perturbed_features,
                "units": "multiples of each feature's standard deviation on the training split"}


def robustness_report(model: Any, X_train: Any, X_test: Any, y_test: Any, task: TaskKind, framework: str,
                      seed: int) -> RobustnessReport | None:
    """The metric under noise (and FGSM for torch models); None when the task has no ground truth."""
    metric = METRICS.get(task)
    if metric is None or y_test is None:
        return None
    rng = np.random.default_rng(seed)
    n = min(len(X_test), ROWS)
    X = X_test.iloc[:n] if hasattr(X_test, "iloc") else np.asarray(X_test)[:n]
    y = np.asarray(y_test)[:n]
    score = SCORES[metric]
    columns, std = _numeric_std(X_train, X)
    baseline = score(y, model.predict(X))
    noise = []
    for s in NOISE_STRENGTHS:
        value = float(np.mean([score(y, model.predict(_with_noise(X, columns, std, s, rng))) for _ in range(NOISE_REPEATS)]))
        noise.append({"strength": s, "value": _r(value), "drop": _r(baseline - value)})
    fgsm = _fgsm(model, X, y, std, task, score, baseline) if framework == "torch" else None
    return RobustnessReport(metric, n, _r(baseline), noise, fgsm, len(columns))


def _numeric_std(X_train: Any, X: Any) -> tuple[list[Any], np.ndarray]:
    """Numeric columns (all columns of a matrix) and their training-split standard deviations."""
    if hasattr(X_train, "columns"):
        from .data import _is_numeric

        columns = [c for c in X_train.columns if _is_numeric(X_train[c])]
        values = X_train[columns].to_numpy(dtype=np.float64)
    else:
        values = np.asarray(X_train, dtype=np.float64)
        columns = list(range(values.shape[1]))
    std = np.nanstd(values, axis=0) if len(columns) else np.zeros(0)
    return columns, np.nan_to_num(std)


def _with_noise(X: Any, columns: list[Any], std: np.ndarray, strength: float, rng: np.random.Generator) -> Any:
    if hasattr(X, "columns"):
        out = X.copy()
        for c, sd in zip(columns, std):
            out[c] = X[c].to_numpy(dtype=np.float64) + rng.normal(0.0, strength * sd, len(X))
        return out
    X = np.asarray(X)
    return (X + rng.normal(0.0, 1.0, X.shape) * (strength * std)).astype(X.dtype)


def _fgsm(model: Any, X: np.ndarray, y: np.ndarray, std: np.ndarray, task: TaskKind,
          score: Callable[[Any, Any], float], baseline: float) -> list[dict[str, float]]:
    """One signed-gradient step per epsilon against the model's own loss (white box)."""
    import torch

    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    module = estimator.module_.eval()
    x = torch.tensor(np.asarray(X, dtype=np.float32).reshape(len(X), *estimator.input_shape), requires_grad=True)
    out = module(x)
    if task == TaskKind.CLASSIFICATION:
        target = torch.from_numpy(np.searchsorted(estimator.classes_, y).astype(np.int64))
        loss = torch.nn.functional.nll_loss(torch.log(out.clamp_min(1e-7)), target)
    else:
        loss = torch.nn.functional.mse_loss(out.reshape(-1), torch.from_numpy(y.astype(np.float32)))
    (grad,) = torch.autograd.grad(loss, x)
    step = grad.sign().reshape(len(X), -1).numpy() * std.astype(np.float32)
    rows = []
    for eps in FGSM_EPSILONS:
        value = score(y, model.predict((np.asarray(X, dtype=np.float32) + eps * step).astype(np.float32)))
        rows.append({"epsilon": eps, "value": _r(value), "drop": _r(baseline - value)})
    return rows


def _accuracy(y: Any, pred: Any) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


def _r2(y: Any, pred: Any) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y, pred))


SCORES: dict[str, Callable[[Any, Any], float]] = {"accuracy": _accuracy, "r2": _r2}


def _r(v: float) -> float:
    return round(float(v), 6)
