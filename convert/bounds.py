"""The bound every artifact must meet, per task x precision: one table, shown by `edgeml convert --help`
and in the README ("Validation bounds").

Every float output of every task has the relative bound (edgeml.task_metrics: max error and normalized
RMSE over the output's scale) at every precision; fp32 and fp16 also have the absolute bound
atol + rtol * max|source|. On top of it, by task: classification and clustering top-1 agreement and the
accuracy drop (labels known); regression the R^2 drop; embedding mean and min cosine; detection box
IoU and score agreement. fp32 is tight (only float reordering), fp16 looser, int8 the loosest a well
quantized model meets (per-channel int8 CNNs, transformer encoders at cosine >= 0.98) and a broken one
does not (zeroed weights, wiped class scores, embeddings at cosine 0.6).
"""

from __future__ import annotations

from dataclasses import replace

from edgeml.compare import Tolerance

from .kinds import Precision, Task

# What every task gets at each precision (the `other` task's bound).
_BASE: dict[Precision, Tolerance] = {
    Precision.FP32: Tolerance(atol=1e-4, rtol=1e-3, min_agreement=0.99, max_metric_drop=0.005,
                              max_rel_error=0.01, max_nrmse=1e-3),
    Precision.FP16: Tolerance(atol=1e-3, rtol=2e-2, min_agreement=0.98, max_metric_drop=0.01,
                              max_rel_error=0.05, max_nrmse=0.01),
    Precision.INT8: Tolerance(atol=None, rtol=0.0, min_agreement=0.95, max_metric_drop=0.02,
                              max_rel_error=0.35, max_nrmse=0.06),
}

# Task-specific bounds on top of the base (fields not named keep the base value).
_TASK: dict[Task, dict[Precision, dict[str, float]]] = {
    Task.EMBEDDING: {
        Precision.FP32: {"min_cosine_mean": 0.9999, "min_cosine_min": 0.999},
        Precision.FP16: {"min_cosine_mean": 0.999, "min_cosine_min": 0.99},
        Precision.INT8: {"min_cosine_mean": 0.98, "min_cosine_min": 0.90},
    },
    Task.DETECTION: {
        Precision.FP32: {"min_box_iou": 0.99, "min_score_agreement": 0.99},
        Precision.FP16: {"min_box_iou": 0.97, "min_score_agreement": 0.95},
        Precision.INT8: {"min_box_iou": 0.85, "min_score_agreement": 0.80},
    },
}

# Which checks of the base apply to a task: agreement and metric only where they mean something.
USES_AGREEMENT = (Task.CLASSIFICATION, Task.CLUSTERING)
USES_METRIC = (Task.CLASSIFICATION, Task.REGRESSION)


def default_bound(task: Task, precision: Precision) -> Tolerance:
    return replace(_BASE[precision], **_TASK.get(task, {}).get(precision, {}))


def _cell(t: Tolerance, task: Task) -> str:
    parts = [f"rel<={t.max_rel_error:g}", f"nrmse<={t.max_nrmse:g}"]
    if t.atol is not None:
        parts.append(f"abs<={t.atol:g}+{t.rtol:g}*max")
    if task in USES_AGREEMENT:
        parts.append(f"top1>={t.min_agreement:g}")
    if task in USES_METRIC:
        parts.append(f"metric drop<={t.max_metric_drop:g}")
    if t.min_cosine_mean is not None:
        parts.append(f"cos mean>={t.min_cosine_mean:g} min>={t.min_cosine_min:g}")
    if t.min_box_iou is not None:
        parts.append(f"IoU>={t.min_box_iou:g} scores>={t.min_score_agreement:g}")
    return ", ".join(parts)


def bound_table() -> list[tuple[str, str, str]]:
    """(task, precision, bound) rows, for --help and the README."""
    return [(task.value, p.value, _cell(default_bound(task, p), task)) for task in Task for p in Precision]


def help_text() -> str:
    """The table as click help text (\\b keeps the lines as written)."""
    lines = ["\b", "Validation bounds (task / precision: bound; override with --atol, --rtol, --max-rel-error, ...):"]
    lines += [f"  {t:<14} {p:<5} {b}" for t, p, b in bound_table()]
    return "\n".join(lines)
