"""Read prediction inputs from a file for `edgeml predict` (standard library and numpy only).

- `.npz`: arrays keyed by input name; `input/NAME` keys (a bundle's samples.npz) work too, and one
  array of any name feeds a one-input model.
- `.csv`: a header row; each input takes its feature-name columns (tabular models) or, for a
  one-input model without feature names, every column. Empty numeric cells are missing (NaN).
- `.json`: a list of records keyed by feature name, an object of arrays keyed by input name, a list
  of rows for a one-input model, or an Open Inference Protocol infer request (`{"inputs": [...]}`).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import DataError
from edgeml.samples import load_npz, sample_inputs
from edgeml.schema import TensorSpec

SUFFIXES = (".npz", ".csv", ".json")
LABEL_COLUMNS = ("label", "labels", "target", "y")  # skipped when every column feeds one input, as in `edgeml convert`


def read_inputs(path: Path, specs: list[TensorSpec]) -> Any:
    """Return something `Model.predict` accepts: a dict of arrays, records, or a list of rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _npz(path, specs)
    if suffix == ".csv":
        return _csv(path, specs)
    if suffix == ".json":
        return _json(path)
    raise DataError(f"input file {path}: use .npz (arrays keyed by input name), .csv (feature columns) or .json")


def _npz(path: Path, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    try:
        arrays = load_npz(path)
    except Exception as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    arrays = sample_inputs(arrays)  # a bundle's samples.npz: its input/NAME arrays
    names = [s.name for s in specs]
    if len(names) == 1 and names[0] not in arrays and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}
    return {k: v for k, v in arrays.items() if k in names} if all(n in arrays for n in names) else arrays


def _csv(path: Path, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [r for r in reader if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from None
    if not header:
        raise DataError(f"{path} is empty; it needs a header row with the feature names")
    return csv_feeds(header, rows, specs, path)


def csv_feeds(header: list[str], rows: list[list[str]], specs: list[TensorSpec], path: Path,
              first_line: int = 2) -> dict[str, np.ndarray]:
    """The model's feeds from CSV rows under `header` (`first_line`: the file line of rows[0], for errors)."""
    index = {name: i for i, name in enumerate(header)}
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        columns = spec.feature_names or ([c for c in header if c not in LABEL_COLUMNS] if len(specs) == 1 else None)
        if columns is None:
            raise DataError(f"{path.name}: input {spec.name!r} has no feature names; use .npz for this model")
        missing = [c for c in columns if c not in index]
        if missing:
            raise DataError(f"{path.name} lacks column(s) {', '.join(map(repr, missing))} needed by input {spec.name!r}")
        cols = [index[c] for c in columns]
        if spec.dtype == "string":
            feeds[spec.name] = np.array([[r[i] if i < len(r) else "" for i in cols] for r in rows], dtype=str).reshape(len(rows), len(cols))
        else:
            feeds[spec.name] = np.array([[_number(r, i, header, path, n) for i in cols]
                                         for n, r in enumerate(rows, first_line)]).reshape(len(rows), len(cols))
    return feeds


def _number(row: list[str], i: int, header: list[str], path: Path, line: int) -> float:
    text = row[i].strip() if i < len(row) else ""
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path.name} line {line}: column {header[i]!r} holds {text!r}, not a number") from None


def _json(path: Path) -> Any:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} is not a readable JSON file: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        return _oip_inputs(data["inputs"], path)
    if isinstance(data, dict) and isinstance(data.get("inputs"), dict):
        return data["inputs"]
    if isinstance(data, (dict, list)):
        return data
    raise DataError(f"{path}: expected a JSON object or list, got {type(data).__name__}")


def _oip_inputs(tensors: list[Any], path: Path) -> dict[str, np.ndarray]:
    from .server.protocol import RequestError, tensor_array

    feeds = {}
    for t in tensors:
        if not isinstance(t, dict) or not {"name", "shape", "datatype", "data"} <= set(t):
            raise DataError(f"{path.name}: each entry of \"inputs\" needs name, shape, datatype and data")
        try:
            feeds[t["name"]] = tensor_array(t["name"], t["shape"], t["datatype"], t["data"])
        except (RequestError, DataError) as exc:
            raise DataError(f"{path.name}: {exc.message}") from None
    return feeds
