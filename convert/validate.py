"""Compare an artifact's outputs with the source model's on the validation data, against its task's bound.

Checks, collected (not stopping at the first): every output present with the source's shape; per float
output the absolute bound (fp32, fp16) and the relative bound (every precision); cosine similarity for
embeddings; box IoU and score agreement for detection; top-1 / label agreement for classifiers and
clustering; the task metric (accuracy or R^2) against the source when labels are known. One report per
artifact. The bounds are convert/bounds.py's table; `meets_bound` is the entry point for quantizers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgeml.compare import Tolerance, agreement, aligned, classes, compare_values, is_float
from edgeml.task_metrics import AUTO_LAYOUT, cosine_rows, detection_agreement, relative_errors

from .bounds import USES_AGREEMENT, default_bound
from .options import Precision, Task

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
    relative_error: float | None = None  # max|err| / scale (edgeml.task_metrics)
    nrmse: float | None = None
    cosine_mean: float | None = None  # embeddings
    cosine_min: float | None = None
    box_iou: float | None = None  # detection
    score_agreement: float | None = None


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
    task: str | None = None
    relative_error: float | None = None  # worst output
    cosine_mean: float | None = None  # worst output (embeddings)
    cosine_min: float | None = None
    box_iou: float | None = None  # worst output (detection)
    score_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskInfo:
    task: Task
    label_output: str | None
    score_output: str | None
    labels: list[Any] | None
    detection_layout: str = AUTO_LAYOUT  # edgeml.task_metrics layouts


def validate(reference: Outputs, actual: Outputs, comparable: list[str] | None, info: TaskInfo,
             tolerance: Tolerance, y_true: np.ndarray | None, data: str) -> ValidationReport:
    failures: list[str] = []
    checks = []
    names = comparable if comparable is not None else list(reference)
    for name in actual:
        if name not in names:
            checks.append(OutputCheck(name, compared=False, note="no counterpart in the source model"))
    for name in names:
        checks.append(_check_output(name, reference.get(name), actual.get(name), info, tolerance, failures))
    agreement = _agreement(reference, actual, info)
    if agreement is not None and agreement < tolerance.min_agreement:
        failures.append(f"top-1 agreement {agreement:.4f} < {tolerance.min_agreement}")
    compared = [c for c in checks if c.compared]
    report = ValidationReport(
        passed=False, samples=_count(actual), data=data, tolerance=asdict(tolerance), outputs=checks,
        max_abs_error=_max([c.max_abs_error for c in checks]), top1_agreement=agreement, task=info.task.value,
        relative_error=_max([c.relative_error for c in compared]),
        cosine_mean=_min([c.cosine_mean for c in compared]), cosine_min=_min([c.cosine_min for c in compared]),
        box_iou=_min([c.box_iou for c in compared]), score_agreement=_min([c.score_agreement for c in compared]),
    )
    if y_true is not None:
        _add_metric(report, reference, actual, info, y_true, tolerance, failures)
    report.failures = failures
    report.passed = not failures
    return report


def check_bound(info: TaskInfo, precision: Precision | str, reference: Outputs, actual: Outputs,
                tolerance: Tolerance | None = None, y_true: np.ndarray | None = None,
                data: str = "given outputs") -> ValidationReport:
    """The full report of `actual` against `reference` under the task's default bound (or `tolerance`)."""
    bound = tolerance or default_bound(info.task, Precision(precision))
    return validate(reference, actual, None, info, bound, y_true, data)


def meets_bound(info: TaskInfo, precision: Precision | str, reference: Outputs, actual: Outputs,
                tolerance: Tolerance | None = None, y_true: np.ndarray | None = None) -> tuple[bool, str]:
    """Whether an artifact's outputs meet the task's bound at `precision`, and a one-line detail.

    The same check `edgeml convert` applies before an artifact enters a bundle; quantizers call it to
    decide whether a recipe is good enough. The detail names the measured figures, then the failures.
    """
    report = check_bound(info, precision, reference, actual, tolerance, y_true)
    return report.passed, summary(report)


def summary(report: ValidationReport) -> str:
    figures = [(k, getattr(report, k)) for k in ("relative_error", "max_abs_error", "cosine_mean", "cosine_min",
                                                  "box_iou", "score_agreement", "top1_agreement", "metric_delta")]
    text = ", ".join(f"{k} {v:.4g}" for k, v in figures if v is not None)
    return text + ("; " + "; ".join(report.failures) if report.failures else "")


def _check_output(name: str, ref: np.ndarray | None, got: np.ndarray | None, info: TaskInfo, tol: Tolerance,
                  failures: list[str]) -> OutputCheck:
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
    own: list[str] = []
    if not check.passed:
        own.append(f"output {name!r}: max abs error {check.max_abs_error:.3g} > allowed {check.allowed:.3g}")
    out = OutputCheck(name, True, _finite(check.max_abs_error), _finite(check.mean_abs_error), check.allowed, check.passed)
    out.relative_error, out.nrmse = relative_errors(ref, got)
    _at_most(own, f"output {name!r}: relative error", out.relative_error, tol.max_rel_error)
    _at_most(own, f"output {name!r}: normalized RMSE", out.nrmse, tol.max_nrmse)
    if info.task == Task.EMBEDDING and ref.ndim >= 2:
        out.cosine_mean, out.cosine_min = cosine_rows(ref, got)
        _at_least(own, f"output {name!r}: mean cosine", out.cosine_mean, tol.min_cosine_mean)
        _at_least(own, f"output {name!r}: min cosine", out.cosine_min, tol.min_cosine_min)
    if info.task == Task.DETECTION and ref.ndim == 3:
        det = detection_agreement(ref, got, info.detection_layout)
        out.box_iou, out.score_agreement = det.box_iou, det.score_agreement
        _at_least(own, f"output {name!r}: box IoU", out.box_iou, tol.min_box_iou)
        _at_least(own, f"output {name!r}: score agreement", out.score_agreement, tol.min_score_agreement)
    out.passed = not own
    failures.extend(own)
    return out


def _at_most(failures: list[str], what: str, value: float | None, bound: float | None) -> None:
    if bound is not None and (value is None or value > bound):
        failures.append(f"{what} {_fmt(value)} > allowed {bound:.3g}")


def _at_least(failures: list[str], what: str, value: float | None, bound: float | None) -> None:
    if bound is not None and (value is None or value < bound):
        failures.append(f"{what} {_fmt(value)} < required {bound:.4g}")


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4g}"


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def predictions(outputs: Outputs, info: TaskInfo) -> np.ndarray | None:
    """Predicted class per sample: the label output, else the argmax of the score output."""
    if info.label_output and info.label_output in outputs:
        return np.asarray(outputs[info.label_output]).reshape(-1)
    if info.score_output and info.score_output in outputs:
        scores = np.asarray(outputs[info.score_output])
        return classes(scores) if is_float(scores) else None
    return None


def _agreement(reference: Outputs, actual: Outputs, info: TaskInfo) -> float | None:
    if info.task not in USES_AGREEMENT:
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


def _min(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
