"""Loading tabular data: CSV and Parquet files, or scikit-learn's bundled datasets by name.

Exact duplicate rows are dropped, rows without a target value are dropped, columns with no value at
all are dropped, missing strings become "" (what `edgeml convert` and devices feed for a null string);
missing numbers stay NaN and are imputed inside the model pipeline; numbers are float32 (what the
exported graph takes). Every count is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import DataError, UsageError

from .options import TrainOptions


@dataclass(frozen=True)
class BundledDataset:
    loader: str  # function name in sklearn.datasets
    description: str
    image_shape: tuple[int, ...] | None = None  # the features are a flattened image of this shape


DATASETS: dict[str, BundledDataset] = {
    "digits": BundledDataset("load_digits", "8x8 images of handwritten digits, 10 classes", (1, 8, 8)),
    "iris": BundledDataset("load_iris", "iris flowers, 4 features, 3 classes"),
    "wine": BundledDataset("load_wine", "wine cultivars, 13 features, 3 classes"),
    "breast_cancer": BundledDataset("load_breast_cancer", "breast tumours, 30 features, binary"),
    "diabetes": BundledDataset("load_diabetes", "diabetes progression, 10 features, regression"),
}
BUNDLED_TARGET = "target"


@dataclass
class TableData:
    frame: Any  # pandas.DataFrame of features (the target column removed)
    target: Any  # pandas.Series, or None for clustering without a target
    source: str
    image_shape: tuple[int, ...] | None = None
    rows_read: int = 0
    duplicates_dropped: int = 0
    missing_target_dropped: int = 0
    empty_columns_dropped: list[str] = field(default_factory=list)
    missing_values: dict[str, int] = field(default_factory=dict)  # column -> count, before imputation
    sha256: str | None = None  # of the data as read (train.lineage), before cleaning

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "rows_read": self.rows_read, "rows_used": len(self.frame),
                "columns": len(self.frame.columns), "duplicates_dropped": self.duplicates_dropped,
                "missing_target_dropped": self.missing_target_dropped,
                "empty_columns_dropped": self.empty_columns_dropped, "missing_values": self.missing_values,
                "sha256": self.sha256}


def load(options: TrainOptions) -> TableData:
    if (options.data is None) == (options.dataset is None):
        raise UsageError("give exactly one of --data FILE (.csv or .parquet) and --dataset NAME "
                         f"({', '.join(DATASETS)})")
    from .lineage import data_sha256

    if options.dataset is not None:
        frame, image_shape, source = _bundled(options.dataset), DATASETS[options.dataset].image_shape, options.dataset
        target = options.target or BUNDLED_TARGET
    else:
        frame, image_shape, source = _read_file(Path(options.data)), None, Path(options.data).name
        target = options.target
    table = clean(frame, target, options, source, image_shape)
    table.sha256 = data_sha256(Path(options.data) if options.data is not None else None, frame)
    return table


def _bundled(name: str) -> Any:
    import sklearn.datasets

    spec = DATASETS.get(name)
    if spec is None:
        raise UsageError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    bunch = getattr(sklearn.datasets, spec.loader)(as_frame=True)
    return bunch.frame.rename(columns={bunch.target.name: BUNDLED_TARGET}) if bunch.target.name != BUNDLED_TARGET else bunch.frame


READERS: dict[str, str] = {".csv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet"}


def _read_file(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise DataError(f"data file {path} not found")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"data file {path}: use {', '.join(READERS)} files")
    try:
        frame = getattr(pd, reader)(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} is empty") from None
    except Exception as exc:
        raise DataError(f"data file {path} is not readable as {path.suffix.lower()}: {_first_line(exc)}") from None
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"data file {path} has no rows")
    return frame


def clean(frame: Any, target: str | None, options: TrainOptions, source: str, image_shape: tuple[int, ...] | None) -> TableData:
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    if target is not None and target not in frame.columns:
        raise DataError(f"target column {target!r} is not in {source} (columns: {_names(columns)})")
    if options.sensitive is not None and options.sensitive not in frame.columns:
        raise DataError(f"sensitive column {options.sensitive!r} is not in {source} (columns: {_names(columns)})")
    rows_read = len(frame)
    before = len(frame)
    frame = frame.drop_duplicates(ignore_index=True)
    duplicates = before - len(frame)
    missing_target = 0
    if target is not None:
        keep = frame[target].notna()
        missing_target = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
    y = frame.pop(target) if target is not None else None
    if frame.columns.empty:
        raise DataError(f"{source} has no feature columns besides the target {target!r}")
    empty = [c for c in frame.columns if frame[c].isna().all()]
    frame = frame.drop(columns=empty)
    if frame.empty:
        raise DataError(f"{source} has no usable rows (after dropping duplicates and rows without a target)")
    missing = {c: int(n) for c, n in frame.isna().sum().items() if n}
    for col in frame.columns:
        if _is_numeric(frame[col]):  # float32, as the exported graph and devices see them
            frame[col] = frame[col].astype(np.float32)
        else:
            frame[col] = frame[col].where(frame[col].notna(), "").astype(str)
    return TableData(frame, y, source, image_shape if not empty else None, rows_read, duplicates, missing_target, empty, missing)


def _is_numeric(series: Any) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series)  # bools count as numbers


def _names(columns: list[str], limit: int = 12) -> str:
    return ", ".join(columns[:limit]) + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def to_matrix(frame: Any) -> np.ndarray:
    """Numeric features as a float32 matrix (torch models); NaN stays NaN (imputed inside the module)."""
    return frame.to_numpy(dtype=np.float32)

