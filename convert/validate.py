"""Compare an artifact's outputs with the source model's on the validation data.

Checks, collected (not stopping at the first): every output present with the source's shape; value
closeness per float output; top-1 / label agreement for classifiers and clustering; the task metric
(accuracy or R^2) against the source when labels are known. One report per artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgeml.compare import Tolerance, agreement, aligned, classes, compare_values, is_float

from .options import Task

Outputs = dict[str, np.ndarray]


@dataclass
class OutputCheck:
    name: str
    compared: bool
    max_abs_error: float | None = None
    mean_abs_error: float | None = None
    allowed: float | None = None  # None: reported, not enforced
    passed: bool = True
    note: str = ""


@dataclass
class ValidationReport:
    passed: bool
    samples: int
    data: str
    tolerance: dict[str, Any]
    outputs: list[OutputCheck]
    max_abs_error: float | None
    top1_agreement: float | None
    metric: str | None = None
    metric_source: float | None = None
    metric_artifact: float | None = None
    metric_delta: float | None = None
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskInfo:
    task: Task
    label_output: str | None
    score_output: str | None
    labels: list[Any] | None


def validate(reference: Outputs, actual: Outputs, comparable: list[str] | None, info: TaskInfo,
             tolerance: Tolerance, y_true: np.ndarray | None, data: str) -> ValidationReport:
    failures: list[str] = []
    checks = []
    names = comparable if comparable is not None else list(reference)
    for name in actual:
        if name not in names:
            checks.append(OutputCheck(name, compared=False, note="no counterpart in the source model"))
    for name in names:
        checks.append(_check_output(name, reference.get(name), actual.get(name), tolerance, failures))
    agreement = _agreement(reference, actual, info)
    if agreement is not None and agreement < tolerance.min_agreement:
        failures.append(f"top-1 agreement {agreement:.4f} < {tolerance.min_agreement}")
    report = ValidationReport(
        passed=False, samples=_count(actual), data=data, tolerance=asdict(tolerance), outputs=checks,
        max_abs_error=_max([c.max_abs_error for c in checks]), top1_agreement=agreement,
    )
    if y_true is not None:
        _add_metric(report, reference, actual, info, y_true, tolerance, failures)
    report.failures = failures
    report.passed = not failures
    return report


def _check_output(name: str, ref: np.ndarray | None, got: np.ndarray | None, tol: Tolerance, failures: list[str]) -> OutputCheck:
    if got is None:
        failures.append(f"output {name!r} is missing")
        return OutputCheck(name, compared=True, passed=False, note="missing")
    ref, got = aligned(ref, got)
    if ref.shape != got.shape:
        failures.append(f"output {name!r} has shape {list(got.shape)}, the source gives {list(ref.shape)}")
        return OutputCheck(name, compared=True, passed=False, note="shape differs")
    if not is_float(ref):
        equal = agreement(ref, got) if ref.size else 1.0
        return OutputCheck(name, compared=True, max_abs_error=None, mean_abs_error=None, note=f"labels: {equal:.4f} equal")
    check = compare_values(ref, got, tol)
    if not check.passed:
        failures.append(f"output {name!r}: max abs error {check.max_abs_error:.3g} > allowed {check.allowed:.3g}")
    return OutputCheck(name, True, check.max_abs_error, check.mean_abs_error, check.allowed, check.passed)


def predictions(outputs: Outputs, info: TaskInfo) -> np.ndarray | None:
    """Predicted class per sample: the label output, else the argmax of the score output."""
    if info.label_output and info.label_output in outputs:
        return np.asarray(outputs[info.label_output]).reshape(-1)
    if info.score_output and info.score_output in outputs:
        scores = np.asarray(outputs[info.score_output])
        return classes(scores) if is_float(scores) else None
    return None


def _agreement(reference: Outputs, actual: Outputs, info: TaskInfo) -> float | None:
    if info.task not in (Task.CLASSIFICATION, Task.CLUSTERING):
        return None
    a, b = predictions(reference, info), predictions(actual, info)
    if a is None or b is None:
        return None
    return agreement(a, b)


def _add_metric(report: ValidationReport, reference: Outputs, actual: Outputs, info: TaskInfo,
                y_true: np.ndarray, tol: Tolerance, failures: list[str]) -> None:
    if info.task == Task.CLASSIFICATION:
        ref_pred, act_pred = predictions(reference, info), predictions(actual, info)
        if ref_pred is None or act_pred is None:
            return
        report.metric = "accuracy"
        report.metric_source = _accuracy(ref_pred, y_true, info)
        report.metric_artifact = _accuracy(act_pred, y_true, info)
    elif info.task == Task.REGRESSION:
        name = next((n for n in reference if np.asarray(reference[n]).dtype.kind == "f"), None)
        if name is None or name not in actual:
            return
        report.metric = "r2"
        report.metric_source = _r2(reference[name], y_true)
        report.metric_artifact = _r2(actual[name], y_true)
    else:
        return
    report.metric_delta = report.metric_artifact - report.metric_source
    if -report.metric_delta > tol.max_metric_drop:
        failures.append(f"{report.metric} drops by {-report.metric_delta:.4f} (> {tol.max_metric_drop})")


def _accuracy(pred: np.ndarray, y_true: np.ndarray, info: TaskInfo) -> float:
    y = np.asarray(y_true).reshape(-1)
    if pred.dtype.kind in "iu" and y.dtype.kind in "OUS" and info.labels:
        pred = np.asarray(info.labels, dtype=object)[pred]
    return float(np.mean(pred.astype(str) == y.astype(str)))


def _r2(pred: np.ndarray, y_true: np.ndarray) -> float:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    ss_res = float(np.sum((y - p) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2)) or 1.0
    return 1.0 - ss_res / ss_tot


def _count(outputs: Outputs) -> int:
    return len(next(iter(outputs.values()))) if outputs else 0


def _max(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
