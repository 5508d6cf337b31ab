"""The prediction cache of `edgeml serve --cache N`: an LRU of model outputs keyed by decoded inputs.

The key is a BLAKE2b digest of the model's identity (name, version, backend, format, precision)
and every decoded input tensor (name, dtype, shape and bytes, after the cast to the model's dtype),
so two requests that mean the same tensors share an entry whatever JSON or binary spelling they
used. The value is the full output dict, so a hit is encoded exactly as the miss was (any subset
of outputs, JSON or binary). The holder clears the cache when the model is swapped; the identity in
the key keeps a request that raced a swap from serving the old model's answer afterwards.
Memory is bounded by N entries (N times the outputs of one request). Off (N = 0) by default.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..metrics import ServerMetrics

_LEN = struct.Struct("<Q")


@dataclass(frozen=True)
class CacheStats:
    """Counters since start (hits and misses survive model swaps; entries do not)."""

    hits: int
    misses: int
    entries: int
    capacity: int


class PredictionCache:
    def __init__(self, capacity: int, metrics: ServerMetrics) -> None:
        self.capacity = capacity
        self.metrics = metrics
        self._entries: OrderedDict[bytes, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        metrics.cache_capacity.set(capacity)

    @staticmethod
    def key(identity: str, feeds: dict[str, np.ndarray]) -> bytes:
        h = hashlib.blake2b(identity.encode(), digest_size=16)
        for name in sorted(feeds):
            arr = feeds[name]
            h.update(_LEN.pack(len(name)) + name.encode() + b"\0" + arr.dtype.str.encode() + repr(arr.shape).encode())
            if arr.dtype.kind == "O":  # strings as objects: length-prefixed UTF-8 of each element
                for v in arr.reshape(-1).tolist():
                    b = v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogatepass")
                    h.update(type(v).__name__.encode() + _LEN.pack(len(b)) + b)
            else:
                h.update(np.ascontiguousarray(arr).data)
        return h.digest()

    def get(self, key: bytes) -> dict[str, np.ndarray] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
        (self.metrics.cache_hits if found is not None else self.metrics.cache_misses).inc()
        return found

    def put(self, key: bytes, outputs: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._entries[key] = outputs
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            size = len(self._entries)
        self.metrics.cache_entries.set(size)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self.metrics.cache_entries.set(0)

    def stats(self) -> CacheStats:
        m = self.metrics
        with self._lock:
            entries = len(self._entries)
        return CacheStats(int(m.cache_hits.value()), int(m.cache_misses.value()), entries, self.capacity)


def identity(info) -> str:
    """The part of the key that names the served model."""
    return "\0".join((info.name, info.version, info.backend, info.format, info.precision))
