"""Per-task closeness of an artifact's outputs to the source's (numpy only: the device uses it too).

- relative error of a float output: max|got - ref| / scale, and the normalized RMSE rmse / scale, where
  scale = max(range of ref, max |ref|): an output's errors are judged against its spread, and a nearly
  constant output against its size (never divided by ~0);
- cosine similarity (embeddings): one vector per row of the last axis, mean and min over the vectors;
- detection (one tensor with boxes and class scores, YOLO-style): boxes are (cx, cy, w, h) then C class
  scores, either channels first [batch, 4+C, N] (Ultralytics' export) or channels last [batch, N, 4+C].
  Per image the `DETECTION_TOP_K` anchors the source scores highest are compared at the same anchor:
  box IoU (mean over them) and score agreement (share where the class agrees and the score is within
  `SCORE_TOLERANCE` of the source's score range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS_FIRST, CHANNELS_LAST, AUTO_LAYOUT = "channels-first", "channels-last", "auto"
DETECTION_LAYOUTS = (AUTO_LAYOUT, CHANNELS_FIRST, CHANNELS_LAST)
DETECTION_TOP_K = 20
SCORE_TOLERANCE = 0.1


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def error_scale(ref: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    if not ref.size:
        return 1.0
    scale = max(float(np.ptp(ref)), float(np.abs(ref).max()))
    return scale if scale > 0 and np.isfinite(scale) else 1.0


def relative_errors(ref: np.ndarray, got: np.ndarray) -> tuple[float | None, float | None]:
    """(max relative error, normalized RMSE) of one float output; None where a value is not finite."""
    ref64, got64 = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if not ref64.size:
        return 0.0, 0.0
    err = got64 - ref64
    scale = error_scale(ref64)
    return _finite(np.abs(err).max() / scale), _finite(np.sqrt(np.mean(err * err)) / scale)


def cosine_rows(ref: np.ndarray, got: np.ndarray) -> tuple[float | None, float | None]:
    """(mean, min) cosine similarity of the vectors along the last axis; two zero vectors count as 1."""
    ref64, got64 = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if not ref64.size:
        return 1.0, 1.0
    a = ref64.reshape(-1, ref64.shape[-1] if ref64.ndim > 1 else 1)
    b = got64.reshape(a.shape)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(both_zero, 1.0, np.sum(a * b, axis=1) / (na * nb))
    cos = np.where(np.isfinite(cos), cos, -1.0)  # NaN/inf in the artifact never counts as similar
    return _finite(cos.mean()), _finite(cos.min())


def unit_norm_rows(arr: np.ndarray, tol: float = 1e-3) -> bool:
    """True when every vector along the last axis has L2 norm 1 (a normalized embedding)."""
    a = np.asarray(arr, np.float64)
    if a.ndim < 2 or not a.size or a.shape[-1] < 2:
        return False
    norms = np.linalg.norm(a.reshape(-1, a.shape[-1]), axis=1)
    return bool(np.all(np.abs(norms - 1.0) < tol))


def probability_rows(arr: np.ndarray, tol: float = 1e-3) -> bool:
    """True when every row is non-negative and sums to 1 (class probabilities)."""
    a = np.asarray(arr, np.float64)
    if a.ndim != 2 or not a.size or a.shape[1] < 2:
        return False
    return bool(np.all(a >= -tol) and np.all(np.abs(a.sum(axis=1) - 1.0) < tol))


def detection_layout(shape: tuple[int, ...], layout: str = AUTO_LAYOUT) -> str:
    """The layout of a [batch, a, b] detection tensor; auto: the smaller of a, b holds 4+C."""
    if layout != AUTO_LAYOUT:
        return layout
    return CHANNELS_FIRST if shape[1] <= shape[2] else CHANNELS_LAST


@dataclass(frozen=True)
class DetectionAgreement:
    box_iou: float | None  # mean IoU of the compared anchors' boxes
    score_agreement: float | None  # share of compared anchors with the same class and a close score
    compared: int  # anchors compared (per image top-k, summed)


def _anchors_last(arr: np.ndarray, layout: str) -> np.ndarray:
    a = np.asarray(arr, np.float64)
    return np.swapaxes(a, 1, 2) if layout == CHANNELS_FIRST else a


def _xyxy(boxes: np.ndarray) -> np.ndarray:
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _xyxy(a), _xyxy(b)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.where(np.all(a == b, axis=-1), 1.0, 0.0))
    return np.where(np.isfinite(iou), iou, 0.0)


def detection_agreement(ref: np.ndarray, got: np.ndarray, layout: str = AUTO_LAYOUT,
                        top_k: int = DETECTION_TOP_K) -> DetectionAgreement:
    """Box IoU and score agreement of a YOLO-style [batch, 4+C, N] / [batch, N, 4+C] output."""
    layout = detection_layout(np.shape(ref), layout)
    r, g = _anchors_last(ref, layout), _anchors_last(got, layout)
    if r.ndim != 3 or r.shape[2] < 5:
        return DetectionAgreement(None, None, 0)
    k = min(top_k, r.shape[1])
    r_scores, g_scores = r[..., 4:], g[..., 4:]
    r_conf = r_scores.max(axis=2)
    top = np.argsort(-r_conf, axis=1)[:, :k]  # [batch, k] anchor indices
    pick = lambda x: np.take_along_axis(x, top[..., None], axis=1)  # noqa: E731
    iou = _iou(pick(r[..., :4]), pick(g[..., :4]))
    rs, gs = pick(r_scores), pick(g_scores)
    tolerance = SCORE_TOLERANCE * (float(np.ptp(r_scores)) or 1.0)
    same_class = rs.argmax(axis=2) == gs.argmax(axis=2)
    with np.errstate(invalid="ignore"):
        close = np.abs(gs.max(axis=2) - rs.max(axis=2)) <= tolerance
    return DetectionAgreement(_finite(iou.mean()), _finite(np.mean(same_class & close)), int(iou.size))
