"""Histograms on fixed bins, shared by convert (reference statistics), train (the run's data
statistics), the device (live telemetry on the bundle's bins) and the fleet (drift, and the one merge of
histograms and latency quantile every fleet aggregate uses).

Numeric: `edges` are inner cut points; a value v falls in bin `searchsorted(edges, v, side="left")`,
so there are len(edges)+1 bins with open tails. Categorical: the listed categories, then "other".
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

QUANTILES = np.linspace(0.1, 0.9, 9)
MAX_CATEGORIES = 50


def numeric_histogram(values: np.ndarray) -> dict[str, Any]:
    """Decile edges of `values` and the counts of `values` on them."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    edges = np.unique(np.quantile(values, QUANTILES)) if values.size else np.array([])
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return {"kind": "numeric", "edges": [float(e) for e in edges], "counts": counts.tolist()}


def categorical_histogram(values: np.ndarray) -> dict[str, Any]:
    cats, counts = np.unique(np.asarray(values).astype(str).reshape(-1), return_counts=True)
    order = np.argsort(-counts)[:MAX_CATEGORIES]
    return {"kind": "categorical", "categories": [str(c) for c in cats[order]], "counts": counts[order].tolist() + [0]}


def bin_counts(reference: dict[str, Any], values: np.ndarray) -> list[int]:
    """Counts of `values` on the bins of an existing histogram (numeric or categorical)."""
    values = np.asarray(values).reshape(-1)
    if reference["kind"] == "numeric":
        edges = np.asarray(reference["edges"], dtype=np.float64)
        v = values.astype(np.float64)
        v = v[np.isfinite(v)]
        return np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1).tolist()
    cats = {c: i for i, c in enumerate(reference["categories"])}
    other = len(reference["categories"])
    idx = np.fromiter((cats.get(str(x), other) for x in values.tolist()), dtype=np.int64, count=len(values))
    return np.bincount(idx, minlength=other + 1).tolist()


class HistogramSum:
    """A running element-wise sum of histograms counted on the same bins (fleet aggregates, sliding windows).

    The first histogram added fixes the bins: its number of counts and, when given, its `bounds` (e.g. the
    upper bounds of latency buckets; without bounds, bins are known only by their number, as with counts on a
    bundle's reference bins). Counts on other bins cannot be added meaningfully: such a histogram is skipped
    and counted in `skipped`, never truncated or padded. `sign=-1` removes a histogram added before.
    """

    def __init__(self) -> None:
        self.bounds: list[float] | None = None
        self.counts: np.ndarray | None = None
        self.skipped = 0

    def add(self, counts: Sequence[float], bounds: Sequence[float] | None = None, sign: int = 1) -> bool:
        """Add (or with sign=-1 remove) one histogram; False when it is on other bins and was skipped."""
        arr = np.asarray(counts, dtype=np.int64)
        if self.counts is None:
            self.counts = np.zeros(len(arr), dtype=np.int64)
            self.bounds = None if bounds is None else [float(b) for b in bounds]
        elif len(arr) != len(self.counts) or (bounds is not None and [float(b) for b in bounds] != self.bounds):
            self.skipped += 1
            return False
        self.counts += sign * arr
        return True

    @property
    def total(self) -> int:
        return 0 if self.counts is None else int(self.counts.sum())

    def tolist(self) -> list[int] | None:
        return None if self.counts is None else self.counts.tolist()


def merge_counts(histograms: Iterable[Sequence[float]]) -> list[int] | None:
    """Element-wise sum of count lists on the same bins (the first fixes them; see HistogramSum); None if none."""
    total = HistogramSum()
    for counts in histograms:
        total.add(counts)
    return total.tolist()


def histogram_quantile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """Prometheus-style quantile of a histogram of non-negative observations (latencies).

    `bounds` are the buckets' upper bounds, `counts` one count per bucket plus a last one for +Inf. The
    value interpolates linearly inside the bucket holding the q-th observation (0 is the lower bound of the
    first bucket); in the +Inf bucket it is the largest finite bound. None for an empty histogram.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"a histogram with {len(bounds)} bounds has {len(bounds) + 1} counts (the last for +Inf), "
                         f"got {len(counts)}")
    arr = np.asarray(counts, dtype=np.float64)
    cum = np.cumsum(arr)
    if cum[-1] <= 0:
        return None
    rank = q * cum[-1]
    i = int(np.searchsorted(cum, rank, side="left"))
    if i >= len(bounds):
        return float(bounds[-1]) if len(bounds) else None
    lower = 0.0 if i == 0 else float(bounds[i - 1])
    below = 0.0 if i == 0 else cum[i - 1]
    inside = arr[i]
    return float(lower + (float(bounds[i]) - lower) * ((rank - below) / inside if inside else 0.0))
