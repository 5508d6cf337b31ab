"""Checks on calibration data shared by the quantizers that need representative samples."""

from __future__ import annotations

import numpy as np

from edgeml.errors import DataError

MIN_FULL_INTEGER_SAMPLES = 16  # fewer gives unstable activation ranges


def checked_samples(feeds: dict[str, np.ndarray], what: str) -> int:
    """The number of calibration samples; DataError when there are too few for `what`."""
    n = len(next(iter(feeds.values())))
    if n < MIN_FULL_INTEGER_SAMPLES:
        raise DataError(
            f"{what} needs at least {MIN_FULL_INTEGER_SAMPLES} calibration samples (got {n}); "
            "pass --calibration FILE with more samples"
        )
    return n


def one_by_one(feeds: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Single-sample feeds (batch axis kept), the unit representative datasets iterate over."""
    n = len(next(iter(feeds.values())))
    return [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)]
