"""Batch prediction: run a model over large input files in chunks and stream the outputs to a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .batch_io import AtomicResult, InputFile, open_inputs
from .model import Model

DEFAULT_CHUNK = 1024

Progress = Callable[[int], None]  # called with the number of rows just written


@dataclass(frozen=True)
class BatchSummary:
    rows: int
    files: int
    output: Path


def predict_path(model: Model, inputs: Path, output: Path, chunk: int = DEFAULT_CHUNK,
                 progress: Progress = lambda _n: None) -> BatchSummary:
    """Predict every row of INPUTS (a file or a directory of them) into OUTPUT, `chunk` rows per call."""
    return predict_files(model, open_inputs(inputs, model.inputs), output, Path(inputs).is_dir(), chunk, progress)


def predict_files(model: Model, files: list[InputFile], output: Path, with_source: bool = False,
                  chunk: int = DEFAULT_CHUNK, progress: Progress = lambda _n: None) -> BatchSummary:
    rows = 0
    with AtomicResult(Path(output)) as writer:
        for file in files:
            for feeds in file.chunks(chunk):
                n = len(next(iter(feeds.values())))
                if n == 0:
                    continue
                outputs = model.predict(feeds)
                columns: dict[str, np.ndarray] = {"row": np.arange(rows, rows + n, dtype=np.int64)}
                if with_source:
                    columns["source"] = np.full(n, file.path.name)
                columns.update(outputs)
                writer.write(columns)
                rows += n
                progress(n)
    return BatchSummary(rows, len(files), Path(output))


def total_rows(files: list[InputFile]) -> int | None:
    """Rows to predict when every input file knows its size up front (for the progress bar)."""
    counts = [f.rows for f in files]
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
