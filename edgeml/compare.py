"""Output comparison, shared by convert validation, the device's install smoke test and shadow agreement.

One set of rules (numpy only, the device uses it):

- values: an output passes when max|got - ref| <= slack * (atol + rtol * max|ref|); NaN never passes;
- predictions: the class per sample is the argmax of (n, k>1) float scores or the value of a
  non-float (label) output; other float outputs have no prediction to agree on;
- agreement: the share of samples whose predictions are equal (compared as strings, so int and
  string labels compare by value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

Outputs = Mapping[str, Any]


@dataclass(frozen=True)
class Tolerance:
    """What an artifact must meet against the source model on the validation data (its task's bound).

    Values pass when max|artifact - source| <= atol + rtol * max|source| (per output); `atol=None`
    means absolute values are not enforced (int8). Every float output also has a relative bound
    (edgeml.task_metrics: max error and normalized RMSE over the output's scale); embeddings a cosine
    bound, detectors a box IoU and score agreement bound. None: not part of this task's bound.
    """

    atol: float | None
    rtol: float
    min_agreement: float  # top-1 / label agreement with the source, classifiers and clustering
    max_metric_drop: float  # accuracy (classification) or R^2 (regression) lost against the source
    max_rel_error: float | None = None  # max|err| / scale, every float output
    max_nrmse: float | None = None  # rmse / scale, every float output
    min_cosine_mean: float | None = None  # embeddings: mean cosine over vectors
    min_cosine_min: float | None = None  # embeddings: worst vector
    min_box_iou: float | None = None  # detection: mean IoU of the top-scored anchors' boxes
    min_score_agreement: float | None = None  # detection: same class and close score on those anchors

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Tolerance":
        """The tolerance a manifest's validation report records (missing keys: not enforced / defaults)."""
        atol = data.get("atol")
        optional = {k: (None if data.get(k) is None else float(data[k])) for k in _OPTIONAL_BOUNDS}
        return cls(atol=None if atol is None else float(atol), rtol=float(data.get("rtol") or 0.0),
                   min_agreement=float(data.get("min_agreement", 0.95)),
                   max_metric_drop=float(data.get("max_metric_drop", 0.0)), **optional)


_OPTIONAL_BOUNDS = ("max_rel_error", "max_nrmse", "min_cosine_mean", "min_cosine_min", "min_box_iou", "min_score_agreement")


@dataclass(frozen=True)
class ValueCheck:
    max_abs_error: float
    mean_abs_error: float
    allowed: float | None  # None: reported, not enforced
    passed: bool


def is_float(arr: np.ndarray) -> bool:
    return np.asarray(arr).dtype.kind in "fc"


def aligned(ref: Any, got: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both as arrays, `got` reshaped to `ref`'s shape when only the layout differs (same size)."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.size == got.size and ref.shape != got.shape:
        got = got.reshape(ref.shape)
    return ref, got


def allowed_error(ref: np.ndarray, atol: float | None, rtol: float, slack: float = 1.0) -> float | None:
    if atol is None:
        return None
    return slack * (atol + rtol * (float(np.abs(ref).max()) if ref.size else 0.0))


def compare_values(ref: np.ndarray, got: np.ndarray, tol: Tolerance, slack: float = 1.0) -> ValueCheck:
    """Absolute errors of float outputs of the same shape, against `tol` (times `slack`)."""
    err = np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64))
    max_err = float(err.max()) if err.size else 0.0
    allowed = allowed_error(np.asarray(ref), tol.atol, tol.rtol, slack)
    passed = allowed is None or (bool(np.isfinite(max_err)) and max_err <= allowed)
    return ValueCheck(max_err, float(err.mean()) if err.size else 0.0, allowed, passed)


def classes(arr: Any) -> np.ndarray | None:
    """The predicted class per sample, or None for an output that is not a prediction."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "fc":
        return arr.argmax(axis=1) if arr.ndim == 2 and arr.shape[1] > 1 else None
    return arr.reshape(-1)


def agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Share of equal predictions (None for no samples or different counts)."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if len(a) == 0 or len(a) != len(b):
        return None
    return float(np.mean(a.astype(str) == b.astype(str)))


def allowed_mismatches(samples: int, min_agreement: float) -> int:
    """Disagreements tolerated on a few samples: what `min_agreement` allows, plus one (a small sample
    cannot resolve the validated rate)."""
    return int((1 - min_agreement) * samples) + 1


def check_golden(expected: Outputs, actual: Outputs, tol: Tolerance, slack: float = 2.0) -> str | None:
    """Why `actual` fails the golden samples' `expected` outputs, or None when it matches.

    Enforced float outputs within `slack` times the tolerance (another CPU than the converting one);
    otherwise (int8) the relative bound with `slack`, the cosine bound for embeddings (1 - cosine times
    `slack`), and predictions must agree up to `allowed_mismatches`.
    """
    for name, ref in expected.items():
        if actual.get(name) is None:
            return f"output {name!r} is missing"
        ref, got = aligned(ref, actual[name])
        if ref.shape != got.shape:
            return f"output {name!r} has shape {list(got.shape)}, expected {list(ref.shape)}"
        if is_float(ref) and tol.atol is not None:
            check = compare_values(ref, got, tol, slack)
            if not check.passed:
                return f"output {name!r}: max abs error {check.max_abs_error:.3g} > {check.allowed:.3g}"
            continue
        if is_float(ref):
            failure = _golden_relative(name, ref, got, tol, slack)
            if failure or tol.min_cosine_mean is not None:
                return failure  # an embedding's argmax is no prediction
        a, b = classes(ref), classes(got)
        if a is None or b is None:
            continue  # float values not enforced at this precision, and no prediction to compare
        mismatches = int(np.sum(a.astype(str) != b.astype(str)))
        if mismatches > allowed_mismatches(len(a), tol.min_agreement):
            return f"output {name!r}: {mismatches} of {len(a)} golden samples disagree"
    return None


def _golden_relative(name: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance, slack: float) -> str | None:
    """The relative and cosine bounds (int8), their slack applied to the allowed loss."""
    from .task_metrics import cosine_rows, relative_errors

    rel, _ = relative_errors(ref, got)
    if tol.max_rel_error is not None and (rel is None or rel > slack * tol.max_rel_error):
        return f"output {name!r}: relative error {rel if rel is not None else float('nan'):.3g} > {slack * tol.max_rel_error:.3g}"
    if tol.min_cosine_mean is not None:
        mean, _ = cosine_rows(ref, got)
        floor = 1.0 - slack * (1.0 - tol.min_cosine_mean)
        if mean is None or mean < floor:
            return f"output {name!r}: mean cosine {mean if mean is not None else float('nan'):.4f} < {floor:.4f}"
    return None


# Per request (shadow): a float output that is not a prediction agrees when this close.
SHADOW_ATOL, SHADOW_RTOL = 1e-3, 1e-2


def outputs_agree(candidate: Outputs, active: Outputs, name: str | None = None) -> bool:
    """Same prediction on one request: class per sample for scores and labels, closeness for other floats.

    Compares output `name` (the bundle's prediction output), else the first output both have.
    """
    if name is None or name not in candidate or name not in active:
        common = [k for k in candidate if k in active]
        if not common:
            return False
        name = common[0]
    a, b = np.asarray(candidate[name]), np.asarray(active[name])
    if a.shape != b.shape:
        return False
    ca, cb = classes(a), classes(b)
    if ca is not None and cb is not None:
        return bool(np.array_equal(ca.astype(str), cb.astype(str)))
    if is_float(a) and is_float(b):
        return bool(np.allclose(a, b, rtol=SHADOW_RTOL, atol=SHADOW_ATOL))
    return False
