"""Histograms on fixed bins, shared by convert (reference statistics), train (the run's data
statistics), the device (live telemetry on the bundle's bins) and the fleet (drift).

Numeric: `edges` are inner cut points; a value v falls in bin `searchsorted(edges, v, side="left")`,
so there are len(edges)+1 bins with open tails. Categorical: the listed categories, then "other".
"""

from __future__ import annotations

from typing import Any

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
