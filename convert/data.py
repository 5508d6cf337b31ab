"""Calibration and validation data: `.npz` keyed by input name, or `.csv` with the feature columns.

Labels, when present, come from the `--target` key/column (default: `label`, `labels`, `target` or `y`).
Everything is checked against the model's input schema, naming the input and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeml import dtypes, tensors
from edgeml.errors import DataError
from edgeml.samples import load_npz
from edgeml.schema import Schema

LABEL_KEYS = ("label", "labels", "target", "y")
Feeds = dict[str, np.ndarray]


@dataclass
class Dataset:
    feeds: Feeds
    labels: np.ndarray | None
    source: str  # file name or "synthetic"

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    def take(self, index: np.ndarray | slice) -> "Dataset":
        return Dataset({k: v[index] for k, v in self.feeds.items()},
                       None if self.labels is None else self.labels[index], self.source)


def load_dataset(path: Path, schema: Schema, target: str | None = None, role: str = "validation") -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{role} data {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        feeds, labels = _from_npz(path, schema, target, role)
    elif suffix == ".csv":
        feeds, labels = _from_csv(path, schema, target, role)
    else:
        raise DataError(f"{role} data {path}: use .npz (arrays keyed by input name) or .csv (feature columns)")
    return Dataset(check_feeds(feeds, schema, f"{role} data {path.name}"), labels, path.name)


def check_feeds(feeds: Feeds, schema: Schema, where: str) -> Feeds:
    """Cast to the schema's dtypes (the rules of `edgeml.tensors`) and check names, ranks and fixed dims.

    Raises DataError, prefixed with `where`, for anything that does not fit.
    """
    out: Feeds = {}
    count = None
    for spec in schema.inputs:
        if spec.name not in feeds:
            raise DataError(f"{where} has no input {spec.name!r} (expected {spec.describe()}; has {', '.join(feeds) or 'nothing'})")
        try:
            arr = tensors.cast(feeds[spec.name], spec.dtype, spec.name)
        except DataError as exc:
            raise DataError(f"{where}: {exc.message}") from None
        if arr.ndim == len(spec.shape) - 1 and spec.shape and spec.shape[-1] == 1:
            arr = arr.reshape(*arr.shape, 1)
        # Axis 0 is the sample axis: a fixed batch of k means the model is run k samples at a time.
        if arr.ndim != len(spec.shape) or any(e is not None and e != r for e, r in zip(spec.shape[1:], arr.shape[1:])):
            raise DataError(f"{where}: input {spec.name!r} expects shape {_shape(spec.shape)}, got {_shape(arr.shape)}")
        if count is not None and arr.shape[0] != count:
            raise DataError(f"{where}: inputs have different sample counts ({count} vs {arr.shape[0]} for {spec.name!r})")
        count = arr.shape[0]
        out[spec.name] = arr
    return out


def _from_npz(path: Path, schema: Schema, target: str | None, role: str) -> tuple[Feeds, np.ndarray | None]:
    try:
        arrays = load_npz(path)
    except Exception as exc:
        raise DataError(f"{role} data {path} is not a readable .npz file: {exc}") from None
    label_key = _label_key(list(arrays), target, path)
    labels = arrays.pop(label_key) if label_key else None
    if len(schema.inputs) == 1 and schema.inputs[0].name not in arrays and len(arrays) == 1:
        # One input, one array: unambiguous whatever its key.
        arrays = {schema.inputs[0].name: next(iter(arrays.values()))}
    return arrays, labels


def _from_csv(path: Path, schema: Schema, target: str | None, role: str) -> tuple[Feeds, np.ndarray | None]:
    import pandas as pd

    # Text inputs' columns are read as text, also when every value looks like a number (zip codes).
    text = {c: str for spec in schema.inputs if spec.dtype == "string" for c in spec.feature_names or []}
    try:
        frame = pd.read_csv(path, dtype=text or None)
    except Exception as exc:
        raise DataError(f"{role} data {path} is not a readable CSV file: {exc}") from None
    label_key = _label_key(list(frame.columns), target, path)
    labels = frame.pop(label_key).to_numpy() if label_key else None
    feeds: Feeds = {}
    for spec in schema.inputs:
        cols = spec.feature_names
        if not cols:
            if len(schema.inputs) != 1:
                raise DataError(f"{role} data {path.name}: the model has several tensor inputs; use .npz keyed by input name")
            cols = list(frame.columns)
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(f"{role} data {path.name} lacks column(s) {', '.join(map(repr, missing))} needed by input {spec.name!r}")
        block = frame[cols]
        feeds[spec.name] = block.to_numpy(dtype=object) if spec.dtype == "string" else block.to_numpy()
    return feeds, labels


def _label_key(keys: list[str], target: str | None, path: Path) -> str | None:
    if target:
        if target not in keys:
            raise DataError(f"{path.name} has no label column/key {target!r} (has {', '.join(keys)})")
        return target
    return next((k for k in LABEL_KEYS if k in keys), None)


def synthetic_dataset(schema: Schema, n: int = 64, seed: int = 0) -> Dataset | None:
    """Standard-normal inputs for numeric models with fixed non-batch dims; None when not possible."""
    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for spec in schema.inputs:
        if spec.dtype != "float32" and spec.dtype != "float16" or any(d is None for d in spec.shape[1:]):
            return None
        shape = [n] + [int(d) for d in spec.shape[1:]]
        feeds[spec.name] = rng.standard_normal(shape).astype(dtypes.to_numpy(spec.dtype))
    return Dataset(feeds, None, "synthetic")


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
