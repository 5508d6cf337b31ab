"""Chunked readers and writers for batch prediction (`edgeml predict --input FILE|DIR --output FILE`).

Readers turn an input file into model feeds `chunk` rows at a time; writers append each chunk of
outputs to the result file. Both are registries keyed by file suffix. Memory stays bounded by the
chunk for .csv and .parquet inputs and .csv/.parquet outputs; an .npz input is read whole (the format
cannot be read in parts) and an .npz output is assembled at the end (it cannot be appended to).

Output columns: `row` (the input row, counted over all files), `source` (the input file, when the
input is a directory), then one column per model output: a scalar per row stays one column; a vector
(class scores, an embedding) is one list column in Parquet, `name[i]` columns in CSV; larger tensors are
flattened. pyarrow is imported only for Parquet (install it on the device to read or write Parquet).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from edgeml.errors import DataError, require
from edgeml.schema import TensorSpec

from .input_files import LABEL_COLUMNS, _npz, csv_feeds

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class InputFile:
    path: Path
    rows: int | None  # known up front (npz, parquet) or None (csv)
    chunks: Callable[[int], Iterator[Feeds]]


# -- readers -------------------------------------------------------------------------------------------
def _npz_reader(path: Path, specs: list[TensorSpec]) -> InputFile:
    feeds = _npz(path, specs)
    n = _rows(feeds, path)

    def chunks(size: int) -> Iterator[Feeds]:
        for start in range(0, n, size):
            yield {k: v[start:start + size] for k, v in feeds.items()}
    return InputFile(path, n, chunks)


def _csv_reader(path: Path, specs: list[TensorSpec]) -> InputFile:
    def chunks(size: int) -> Iterator[Feeds]:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if not header:
                    raise DataError(f"{path} is empty; it needs a header row with the feature names")
                line, rows = 2, []
                for row in reader:
                    if row:
                        rows.append(row)
                    if len(rows) == size:
                        yield csv_feeds(header, rows, specs, path, line)
                        line, rows = line + len(rows), []
                if rows:
                    yield csv_feeds(header, rows, specs, path, line)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path} is not a readable CSV file: {exc}") from None
    return InputFile(path, None, chunks)


def _parquet_reader(path: Path, specs: list[TensorSpec]) -> InputFile:
    pq = require("pyarrow.parquet", "train", "pyarrow")
    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
        raise DataError(f"{path} is not a readable Parquet file: {exc}") from None
    names = file.schema_arrow.names

    def chunks(size: int) -> Iterator[Feeds]:
        for batch in file.iter_batches(batch_size=size):
            yield _table_feeds({n: batch.column(n) for n in names}, specs, path)
    return InputFile(path, file.metadata.num_rows, chunks)


def _table_feeds(columns: dict[str, Any], specs: list[TensorSpec], path: Path) -> Feeds:
    """Feeds from Arrow columns: an input's feature-name columns, a list column named after the input,
    or (one input without feature names) every non-label column."""
    feeds: Feeds = {}
    for spec in specs:
        if spec.name in columns and spec.name not in (spec.feature_names or []):
            values = columns[spec.name].to_numpy(zero_copy_only=False)
            arr = np.stack(values) if values.dtype == object else values
            shape = [d for d in spec.shape[1:]]
            feeds[spec.name] = arr.reshape(len(arr), *shape) if shape and all(shape) else arr
            continue
        wanted = spec.feature_names or ([c for c in columns if c not in LABEL_COLUMNS] if len(specs) == 1 else None)
        if wanted is None:
            raise DataError(f"{path.name}: input {spec.name!r} has no feature names and no column of that name")
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise DataError(f"{path.name} lacks column(s) {', '.join(map(repr, missing))} needed by input {spec.name!r}")
        cols = [columns[c].to_numpy(zero_copy_only=False) for c in wanted]
        if spec.dtype == "string":
            feeds[spec.name] = np.stack([c.astype(str) for c in cols], axis=1)
        else:
            feeds[spec.name] = np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1)
    return feeds


READERS: dict[str, Callable[[Path, list[TensorSpec]], InputFile]] = {
    ".npz": _npz_reader, ".csv": _csv_reader, ".parquet": _parquet_reader,
}


def open_inputs(path: Path, specs: list[TensorSpec]) -> list[InputFile]:
    """The input files of FILE or of a directory (its supported files in name order)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in READERS)
        if not files:
            raise DataError(f"input directory {path} holds no {', '.join(READERS)} files")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"input {path} not found")
    for f in files:
        if f.suffix.lower() not in READERS:
            raise DataError(f"input file {f}: batch prediction reads {', '.join(READERS)}")
    return [READERS[f.suffix.lower()](f, specs) for f in files]


def _rows(feeds: Feeds, path: Path) -> int:
    lengths = {len(v) for v in feeds.values() if np.ndim(v)}
    if len(lengths) != 1:
        raise DataError(f"{path.name}: every input needs the same number of rows (got {sorted(lengths)})")
    return lengths.pop()


# -- writers -------------------------------------------------------------------------------------------
class Writer(Protocol):
    def write(self, columns: dict[str, np.ndarray]) -> None: ...
    def close(self) -> None: ...


def _matrix(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    return arr.reshape(len(arr), -1) if arr.ndim > 1 else arr.reshape(-1, 1)


class CsvWriter:
    def __init__(self, path: Path) -> None:
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._header: list[str] | None = None

    def write(self, columns: dict[str, np.ndarray]) -> None:
        mats = {k: _matrix(v) for k, v in columns.items()}
        if self._header is None:
            self._header = [k if m.shape[1] == 1 else f"{k}[{i}]" for k, m in mats.items() for i in range(m.shape[1])]
            self._csv.writerow(self._header)
        self._csv.writerows(np.concatenate([m.astype(object) for m in mats.values()], axis=1).tolist())

    def close(self) -> None:
        self._file.close()


class ParquetWriter:
    def __init__(self, path: Path) -> None:
        self._pa = require("pyarrow", "train")
        self._pq = require("pyarrow.parquet", "train", "pyarrow")
        self._path, self._writer = path, None

    def _array(self, values: np.ndarray) -> Any:
        arr = np.asarray(values)
        if arr.dtype.kind in "USO":  # pa.array on strings imports pandas (0.4 s): only for string outputs
            text = arr.astype(str).reshape(len(arr), -1)
            return self._pa.array(text[:, 0].tolist() if text.shape[1] == 1 else text.tolist())
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)  # Arrow packs booleans in bits; 0/1 bytes keep the buffer path simple
        flat = np.ascontiguousarray(arr.reshape(len(arr), -1))
        # Numbers go in through their buffers: no copy, and no pandas import.
        values = self._pa.Array.from_buffers(self._pa.from_numpy_dtype(flat.dtype), flat.size,
                                             [None, self._pa.py_buffer(flat)])
        return values if flat.shape[1] == 1 else self._pa.FixedSizeListArray.from_arrays(values, flat.shape[1])

    def write(self, columns: dict[str, np.ndarray]) -> None:
        table = self._pa.Table.from_arrays([self._array(v) for v in columns.values()], names=list(columns))
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(self._path, table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class NpzWriter:
    def __init__(self, path: Path) -> None:
        self._path, self._parts = path, {}

    def write(self, columns: dict[str, np.ndarray]) -> None:
        for k, v in columns.items():
            self._parts.setdefault(k, []).append(np.asarray(v))

    def close(self) -> None:
        with open(self._path, "wb") as f:
            np.savez(f, **{k: np.concatenate(v) for k, v in self._parts.items()})


WRITERS: dict[str, Callable[[Path], Writer]] = {".csv": CsvWriter, ".parquet": ParquetWriter, ".npz": NpzWriter}


class AtomicResult:
    """The result file appears complete or not at all: chunks go to a hidden partial file in the same
    directory, renamed over the output when every row is written, deleted on any failure."""

    def __init__(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix not in WRITERS:
            raise DataError(f"--output {path}: write {', '.join(WRITERS)}")
        if not path.parent.is_dir():
            raise DataError(f"--output {path}: directory {path.parent} does not exist")
        self.path = path
        self._partial = path.with_name(f".{path.name}.partial{suffix}")
        self.writer = WRITERS[suffix](self._partial)

    def __enter__(self) -> Writer:
        return self.writer

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.writer.close()
        except Exception:
            self._partial.unlink(missing_ok=True)
            raise
        if exc_type is None:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)
