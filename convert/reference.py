"""Reference statistics for drift: per-feature histograms on fixed bin edges and a prediction histogram.

Numeric features: `edges` are the inner cut points (deciles of the reference data); a value v falls in
bin `searchsorted(edges, v, side="left")`, so there are len(edges)+1 bins with open tails.
Categorical features: the categories seen, plus an implicit "other" bin at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeml.histograms import categorical_histogram, numeric_histogram
from edgeml.schema import Schema

from .options import Task
from .validate import TaskInfo, predictions

MAX_PER_COLUMN_FEATURES = 64


def feature_histograms(schema: Schema, feeds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for spec in schema.inputs:
        arr = feeds[spec.name]
        hist = categorical_histogram if spec.dtype == "string" else numeric_histogram
        if spec.feature_names and arr.ndim == 2 and arr.shape[1] == len(spec.feature_names):
            for i, feature in enumerate(spec.feature_names):
                out.append({"input": spec.name, "feature": feature, "index": i, **hist(arr[:, i])})
        elif arr.ndim == 2 and arr.shape[1] <= MAX_PER_COLUMN_FEATURES:
            for i in range(arr.shape[1]):
                out.append({"input": spec.name, "feature": f"{spec.name}[{i}]", "index": i, **hist(arr[:, i])})
        else:  # images and other large tensors: one histogram over all values
            out.append({"input": spec.name, "feature": spec.name, "index": None, **hist(arr)})
    return out


def prediction_histogram(outputs: dict[str, np.ndarray], info: TaskInfo) -> dict[str, Any] | None:
    if info.task in (Task.CLASSIFICATION, Task.CLUSTERING):
        pred = predictions(outputs, info)
        return None if pred is None else {"output": info.label_output or info.score_output, **categorical_histogram(pred)}
    name = next((n for n, v in outputs.items() if np.asarray(v).dtype.kind == "f"), None)
    return None if name is None else {"output": name, **numeric_histogram(outputs[name])}


def reference_statistics(schema: Schema, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                         info: TaskInfo, data: str) -> dict[str, Any]:
    return {
        "data": data,
        "samples": len(next(iter(feeds.values()))),
        "features": feature_histograms(schema, feeds),
        "prediction": prediction_histogram(outputs, info),
        "binning": "numeric: bin = searchsorted(edges, v, side='left'), len(edges)+1 bins; categorical: listed categories then 'other'",
    }
