"""Run a session or reference function over a dataset, respecting fixed batch sizes; time it."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

from edgeml.schema import Schema
from edgeml.tensors import fixed_batch, run_in_chunks

Feeds = dict[str, np.ndarray]
RunFn = Callable[[Feeds], Feeds]
CHUNK = 256  # samples per call for models with a dynamic batch axis


def batch_size(schema: Schema) -> int | None:
    """The fixed batch size, or None when every input has a dynamic batch axis."""
    return fixed_batch(schema.inputs)


def run_all(fn: RunFn, feeds: Feeds, schema: Schema) -> Feeds:
    fixed = batch_size(schema)
    return run_in_chunks(fn, feeds, fixed or CHUNK, pad=fixed is not None)


def measure_latency(fn: RunFn, sample: Feeds, runs: int = 50, warmup: int = 5) -> dict[str, float | int]:
    """Median and p90 wall time of one call on `sample` (single-sample batch), in milliseconds."""
    for _ in range(warmup):
        fn(sample)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(sample)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 4),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))], 4),
        "runs": runs,
        "batch": len(next(iter(sample.values()))),
        "threads": 1,
    }
