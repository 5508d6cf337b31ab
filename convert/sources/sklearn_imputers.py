"""SimpleImputer on string columns whose missing value is NaN (scikit-learn's default).

On the device a missing string is "" (edgeml.tensors turns None/NaN in text into ""), and ONNX string
tensors cannot hold NaN, so skl2onnx refuses such imputers. The graph is therefore built from a copy whose
string imputers treat "" as missing, and the reference gives the estimator NaN where a column feeding one
of them holds "" — the same missing value on both sides. The user's estimator is never modified.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

DEVICE_MISSING = ""  # how a missing string reaches the graph


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _string_nan_imputers(model: Any) -> list[tuple[Any, list[str]]]:
    """(imputer, raw columns it sees) for every SimpleImputer with NaN missing values on string data."""
    first = model.steps[0][1] if hasattr(model, "steps") else model
    if type(first).__name__ != "ColumnTransformer":
        return []
    found = []
    for _, trans, cols in getattr(first, "transformers_", []):
        steps = [s[1] for s in trans.steps] if hasattr(trans, "steps") else [trans]
        imputer = steps[0] if steps else None  # only an imputer fed the raw column sees the device's ""
        if type(imputer).__name__ == "SimpleImputer" and _is_nan(imputer.missing_values):
            stats = np.asarray(getattr(imputer, "statistics_", []))
            if stats.dtype.kind in "OUS":
                found.append((imputer, [str(c) for c in (cols if isinstance(cols, (list, tuple)) else [cols])]))
    return found


def for_export(model: Any) -> Any:
    """`model`, or a deep copy whose string NaN imputers take "" as the missing value."""
    if not _string_nan_imputers(model):
        return model
    clone = copy.deepcopy(model)
    for imputer, _ in _string_nan_imputers(clone):
        imputer.missing_values = DEVICE_MISSING
    return clone


def missing_string_columns(model: Any) -> set[str]:
    """Raw columns where "" must reach the estimator as NaN."""
    return {c for _, cols in _string_nan_imputers(model) for c in cols}
