"""The served model behind one reference, replaceable at run time without failing a request.

A request reads `holder.current` once and uses that `Served` object to the end, so a swap never
changes a model under a running request: in-flight requests finish on the old model, new requests
get the new one. A holder can be empty (the daemon is live but not ready), e.g. while the device
agent installs a first model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..batching import BatchOptions, MicroBatcher
from ..metrics import ServerMetrics
from ..model import Model
from .cache import CacheStats, PredictionCache, identity
from .protocol import InferCodec, dumps, model_metadata


@dataclass(frozen=True)
class Served:
    """A model with everything the HTTP layer needs, precomputed at swap time."""

    model: Model
    codec: InferCodec
    metadata: bytes  # the model metadata response body
    ready_body: bytes
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # prepared feeds -> outputs
    batcher: MicroBatcher | None
    identity: str  # the model's part of a prediction cache key

    @classmethod
    def build(cls, model: Model, batch: BatchOptions) -> "Served":
        batcher = MicroBatcher(model, batch) if batch.enabled else None
        return cls(model, InferCodec(model), dumps(model_metadata(model)),
                   dumps({"name": model.info.name, "ready": True}),
                   batcher.run if batcher else model.run, batcher, identity(model.info))

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


class ModelHolder:
    """Holds the served model; `swap` replaces it atomically."""

    def __init__(self, batch: BatchOptions | None = None, metrics: ServerMetrics | None = None,
                 cache_size: int = 0) -> None:
        self.batch = (batch or BatchOptions()).check()
        self.metrics = metrics or ServerMetrics()
        # The prediction cache (edgeml serve --cache N), emptied on every swap; None when off.
        self.cache = PredictionCache(cache_size, self.metrics) if cache_size > 0 else None
        self.current: Served | None = None
        self._lock = threading.Lock()  # serialises swaps; readers never take it

    @property
    def ready(self) -> bool:
        return self.current is not None

    @property
    def model(self) -> Model | None:
        served = self.current
        return served.model if served else None

    def swap(self, model: Model | None) -> Model | None:
        """Serve `model` from now on (None: serve nothing, not ready); return the previous model.

        Everything for the new model is built before the switch; the switch is one assignment.
        The old model's micro-batcher (if any) finishes its queued requests before this returns.
        """
        new = Served.build(model, self.batch) if model is not None else None
        with self._lock:
            old, self.current = self.current, new
            if self.cache is not None:
                self.cache.clear()
            self._publish(new)
        if old is not None:
            old.close()
        return old.model if old else None

    def close(self) -> None:
        self.swap(None)

    def cache_stats(self) -> CacheStats | None:
        """Prediction cache hits, misses and size (for the agent's telemetry); None when the cache is off."""
        return self.cache.stats() if self.cache is not None else None

    def _publish(self, served: Served | None) -> None:
        m = self.metrics
        if served is None:
            m.model_info.clear()
            m.ready.set(0)
            return
        i = served.model.info
        m.model_info.replace(1, model=i.name, version=i.version, backend=i.backend, format=i.format, precision=i.precision)
        m.ready.set(1)
        m.swaps.inc()
