"""Run a model on more samples than one call takes: in chunks along the batch axis, outputs joined."""

from __future__ import annotations

from typing import Callable

import numpy as np

Feeds = dict[str, np.ndarray]


def run_in_chunks(run: Callable[[Feeds], Feeds], feeds: Feeds, step: int, pad: bool) -> Feeds:
    """Call `run` on at most `step` samples at a time and concatenate its outputs.

    With `pad` (fixed-batch models), a short last chunk is filled up to `step` by repeating its last
    sample, and the padding is cut off the outputs again.
    """
    n = len(next(iter(feeds.values())))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, step):
        chunk = {k: v[start:start + step] for k, v in feeds.items()}
        real = min(step, n - start)
        if pad and real < step:
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], step - real, axis=0)]) for k, v in chunk.items()}
        for name, value in run(chunk).items():
            parts.setdefault(name, []).append(np.asarray(value)[:real])
    return {k: np.concatenate(v) for k, v in parts.items()}
