"""Turn what a caller passes to `Model.predict` into checked feeds for a backend session.

Everything that depends only on the schema (dtypes, ranks, fixed dimensions, feature names) is
computed once when the model loads. The hot path for a correctly typed array is a handful of
attribute checks; anything else goes through a slower path that casts by the shared rules of
`edgeml.tensors` or raises a `DataError` naming the input, the expected and the received dtype/shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgeml import dtypes, tensors
from edgeml.errors import DataError
from edgeml.schema import TensorSpec

Feeds = dict[str, np.ndarray]


def _shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class InputCheck:
    """Check and convert the value of one input tensor."""

    __slots__ = ("name", "spec", "dtype", "rank", "fixed", "is_string", "dims_after_batch", "features")

    def __init__(self, spec: TensorSpec, io_dtype: str | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        want = io_dtype if io_dtype and spec.dtype.startswith("float") else spec.dtype
        self.dtype = dtypes.to_numpy(want)
        self.is_string = spec.dtype == "string"
        self.rank = len(spec.shape)
        self.fixed = tuple((axis, size) for axis, size in enumerate(spec.shape) if size is not None)
        self.dims_after_batch = list(spec.shape[1:])
        self.features = list(spec.feature_names or [])

    def __call__(self, value: Any) -> np.ndarray:
        # Fast path: an ndarray of the right dtype and rank; only fixed dims are left to compare.
        if type(value) is np.ndarray and value.dtype is self.dtype and value.ndim == self.rank:
            shape = value.shape
            for axis, size in self.fixed:
                if shape[axis] != size:
                    raise self._shape_error(shape)
            return value
        return self.convert(value)

    def convert(self, value: Any) -> np.ndarray:
        return self.fit_shape(tensors.cast(self._as_array(value), self.dtype, self.name))

    def fit_shape(self, arr: np.ndarray) -> np.ndarray:
        """`arr` (already of this input's dtype) with a missing axis added, checked against the shape."""
        if arr.ndim == self.rank - 1:
            arr = self._add_missing_axis(arr)
        if arr.ndim != self.rank or any(arr.shape[axis] != size for axis, size in self.fixed):
            raise self._shape_error(arr.shape)
        return np.ascontiguousarray(arr)

    def _as_array(self, value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value
        try:
            return np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise DataError(f"input {self.name!r}: cannot make an array of the value given ({exc}); "
                            f"expected {self.spec.dtype} {_shape_text(self.spec.shape)}") from None

    def _add_missing_axis(self, arr: np.ndarray) -> np.ndarray:
        """[n] for a [?, 1] column, or one sample without its batch axis for a [?, ...] input."""
        if self.rank >= 2 and self.spec.shape[-1] == 1:
            return arr.reshape(*arr.shape, 1)
        if self.spec.shape and self.spec.shape[0] is None and _matches(arr.shape, self.dims_after_batch):
            return arr.reshape(1, *arr.shape)
        return arr

    def _shape_error(self, shape: Sequence[int]) -> DataError:
        return DataError(f"input {self.name!r} expects shape {_shape_text(self.spec.shape)} "
                         f"({self.spec.dtype}), got shape {_shape_text(shape)}")


def _matches(shape: Sequence[int], expected: Sequence[int | None]) -> bool:
    return len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))


class SharedDims:
    """Inputs whose schemas name the same dynamic axis (e.g. input_ids and attention_mask share
    `sequence`) must agree in its size; a mismatch is a DataError naming both inputs and the axis."""

    __slots__ = ("groups",)

    def __init__(self, specs: list[TensorSpec]) -> None:
        by_name: dict[str, list[tuple[str, int]]] = {}
        for spec in specs:
            for axis in range(len(spec.shape)):
                dim = spec.dim_name(axis)
                if dim is not None:
                    by_name.setdefault(dim, []).append((spec.name, axis))
        self.groups = [(dim, members) for dim, members in by_name.items() if len(members) > 1]

    def __call__(self, feeds: Feeds) -> Feeds:
        for dim, members in self.groups:
            first_name, first_axis = members[0]
            size = feeds[first_name].shape[first_axis]
            for name, axis in members[1:]:
                if feeds[name].shape[axis] != size:
                    raise DataError(f"inputs {first_name!r} and {name!r} share the dynamic dimension {dim!r} but have "
                                    f"sizes {size} and {feeds[name].shape[axis]} (shapes "
                                    f"{_shape_text(feeds[first_name].shape)} and {_shape_text(feeds[name].shape)}); "
                                    "send them with equal lengths")
        return feeds


class FeedBuilder:
    """Accept a dict of arrays, one array (one-input models) or records (tabular models)."""

    def __init__(self, specs: list[TensorSpec], io_dtype: str | None = None) -> None:
        self.checks = [InputCheck(s, io_dtype) for s in specs]
        self.names = [c.name for c in self.checks]
        self.single = self.checks[0] if len(self.checks) == 1 else None
        self.tabular = all(c.features for c in self.checks)
        self._name_set = frozenset(self.names)
        shared = SharedDims(specs)
        # None when no two inputs share a named axis: the hot path then pays nothing for the check.
        self.shared: SharedDims | None = shared if shared.groups else None

    def __call__(self, inputs: Any) -> Feeds:
        feeds = self.build(inputs)
        return feeds if self.shared is None else self.shared(feeds)

    def build(self, inputs: Any) -> Feeds:
        """Feeds from `inputs`, each input checked on its own (`__call__` also checks shared axes)."""
        single = self.single
        if single is not None and type(inputs) is np.ndarray:
            return {single.name: single(inputs)}
        if isinstance(inputs, Mapping):
            return self.from_mapping(inputs)
        if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], Mapping):
            return self.from_records(inputs)
        if single is not None:
            return {single.name: single(inputs)}
        raise DataError(f"this model has {len(self.names)} inputs ({', '.join(self.names)}): pass a dict "
                        "keyed by input name" + (" or a list of records keyed by feature name" if self.tabular else ""))

    def from_mapping(self, inputs: Mapping[str, Any]) -> Feeds:
        if len(inputs) != len(self.checks) or not self._name_set.issuperset(inputs):
            if self.tabular and self._is_record(inputs):
                return self.from_records([inputs])
            if self.tabular and set(inputs) == {f for c in self.checks for f in c.features}:
                return self.from_columns(inputs)
            self._raise_names(inputs)
        try:
            return {c.name: c(inputs[c.name]) for c in self.checks}
        except DataError:
            if self.tabular and self._is_record(inputs):
                return self.from_records([inputs])
            raise

    def from_records(self, records: Sequence[Mapping[str, Any]]) -> Feeds:
        if not self.tabular:
            raise DataError("records (dicts keyed by feature name) need a tabular model with feature names; "
                            f"this model's inputs are {', '.join(c.spec.describe() for c in self.checks)}")
        feeds: Feeds = {}
        for check in self.checks:
            rows = []
            for i, record in enumerate(records):
                try:
                    rows.append([record[f] for f in check.features])
                except KeyError as exc:
                    raise DataError(f"record {i} has no feature {exc.args[0]!r} (input {check.name!r} needs "
                                    f"{', '.join(map(repr, check.features))})") from None
                except TypeError:
                    raise DataError(f"record {i} is a {type(record).__name__}, not a dict keyed by feature name") from None
            feeds[check.name] = check.convert(_column_array(rows, check))
        known = {f for c in self.checks for f in c.features}
        extra = [k for k in records[0] if k not in known] if records else []
        if extra:
            raise DataError(f"unknown feature(s) {', '.join(map(repr, extra))}; the model uses {', '.join(map(repr, sorted(known)))}")
        return feeds

    def from_columns(self, columns: Mapping[str, Any]) -> Feeds:
        """Columns keyed by feature name (e.g. a dict made from a data frame)."""
        feeds: Feeds = {}
        for check in self.checks:
            parts = [np.asarray(columns[f]) for f in check.features]
            if any(p.ndim != 1 for p in parts) or len({len(p) for p in parts}) != 1:
                raise DataError(f"columns {', '.join(map(repr, check.features))} for input {check.name!r} must be "
                                "one-dimensional and of equal length")
            block = parts[0].reshape(-1, 1) if len(parts) == 1 else np.column_stack(parts)
            feeds[check.name] = check.convert(block)
        return feeds

    def _is_record(self, inputs: Mapping[str, Any]) -> bool:
        features = {f for c in self.checks for f in c.features}
        return set(inputs) <= features and all(np.ndim(v) == 0 for v in inputs.values())

    def _raise_names(self, inputs: Mapping[str, Any]) -> None:
        missing = [n for n in self.names if n not in inputs]
        extra = [str(k) for k in inputs if k not in self._name_set]
        parts = []
        if missing:
            specs = {c.name: c.spec for c in self.checks}
            parts.append("missing input(s) " + ", ".join(specs[n].describe() for n in missing))
        if extra:
            parts.append("unknown input(s) " + ", ".join(map(repr, extra)))
        raise DataError("; ".join(parts) + f" (the model's inputs are {', '.join(self.names)})")


def _column_array(rows: list[list[Any]], check: InputCheck) -> np.ndarray:
    """Record values as an array for `check`: text stays objects (None is missing), numbers get NaN for None."""
    if check.is_string or any(isinstance(v, str) for row in rows for v in row):
        return np.array(rows, dtype=object)  # the cast turns None into "" or refuses a string, naming it
    return np.array([[math.nan if v is None else v for v in row] for row in rows])
