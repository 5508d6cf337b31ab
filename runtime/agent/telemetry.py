"""Per-interval telemetry of the served model: counts, errors, latency histogram, CPU, RSS, and input
feature / prediction histograms on the bundle's own reference bins (so the fleet can compute drift).

The request path only appends to counters and keeps a bounded sample of feeds/outputs; binning
happens once per interval, off the request path.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

import numpy as np

from edgeml.histograms import bin_counts
from edgeml.messages import LatencyHistogram, ShadowTelemetry, Telemetry
from edgeml.messages.counters import CacheTelemetry, CaptureTelemetry

from ..metrics import LATENCY_BUCKETS

MAX_SAMPLED_REQUESTS = 500  # per interval, for the feature and prediction histograms


class TelemetryRecorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.mirror: Any = None  # optional callable(model, feeds, outputs, seconds): the shadow's sampler (O(1))
        self._reset(time.monotonic())
        self.seq = 0
        self._last_cache = (0, 0)  # cache hits and misses (counters since start) at the previous message
        self._last_capture: dict[str, int] = {}  # capture sampler counts at the previous message
        try:
            import psutil

            self._process = psutil.Process()
            self._process.cpu_percent(None)
        except Exception:  # psutil is a base dependency; tolerate odd platforms
            self._process = None

    def _reset(self, now: float) -> None:
        self.started = now
        self.requests = 0
        self.errors = 0
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.samples: list[tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    # -- request path --------------------------------------------------------------------------
    def observe(self, model: Any, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray], seconds: float) -> None:
        i = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            self.requests += 1
            self.latency[i] += 1
            if len(self.samples) < MAX_SAMPLED_REQUESTS:
                self.samples.append((model, feeds, outputs))
        if self.mirror is not None:
            self.mirror(model, feeds, outputs, seconds)

    def error(self, model: Any) -> None:
        with self._lock:
            self.requests += 1
            self.errors += 1

    # -- once per interval ---------------------------------------------------------------------
    def collect(self, model: Any, dropped: int | None = None, shadow: ShadowTelemetry | None = None,
                cache: Any = None, capture: dict[str, int] | None = None, capturing: bool = False) -> Telemetry:
        """The telemetry message for the interval that ends now; counters start again from zero.

        `cache` is the server's `CacheStats` (None when the cache is off), `capture` the capture sampler's
        counts since start; both are sent as counts since the previous message. Capture counters go out
        while a capture policy applies (`capturing`) and for as long as rows are still uploaded or dropped."""
        now = time.monotonic()
        with self._lock:
            requests, errors, latency, samples, started = self.requests, self.errors, self.latency, self.samples, self.started
            self._reset(now)
        self.seq += 1
        cpu = rss = None
        if self._process is not None:
            cpu, rss = float(self._process.cpu_percent(None)), int(self._process.memory_info().rss)
        features = prediction = None
        if model is not None:
            mine = [(f, o) for m, f, o in samples if m is model]
            binned, counts = bin_samples(model.manifest.reference or {}, mine)
            features = {name: tuple(c) for name, c in binned.items()}
            prediction = None if counts is None else tuple(counts)
        return Telemetry(
            seq=self.seq, ts=time.time(), interval_s=max(now - started, 1e-3), requests=requests, errors=errors,
            model=model.info.name if model else None, version=model.info.version if model else None,
            latency=LatencyHistogram(LATENCY_BUCKETS, tuple(latency)), cpu_percent=cpu, rss_bytes=rss,
            features=features, prediction=prediction, dropped=dropped, shadow=shadow,
            cache=self._cache_delta(cache), capture=self._capture_delta(capture, capturing))

    def _cache_delta(self, stats: Any) -> CacheTelemetry | None:
        if stats is None:
            return None
        last, self._last_cache = self._last_cache, (stats.hits, stats.misses)
        return CacheTelemetry(hits=_since(stats.hits, last[0]), misses=_since(stats.misses, last[1]),
                              entries=min(stats.entries, stats.capacity), capacity=stats.capacity)

    def _capture_delta(self, counts: dict[str, int] | None, capturing: bool) -> CaptureTelemetry | None:
        if counts is None:
            return None
        now = {k: int(counts.get(k, 0)) for k in ("written", "uploaded", "dropped")}
        last, self._last_capture = self._last_capture, now
        delta = {k: _since(v, last.get(k, 0)) for k, v in now.items()}
        if not capturing and not any(delta.values()):
            return None
        return CaptureTelemetry(captured=delta["written"], uploaded=delta["uploaded"], dropped=delta["dropped"])


def _since(now: int, before: int) -> int:
    """A counter's increase; a counter that went back (a restarted sampler) counts from zero."""
    return now - before if now >= before else now


def bin_samples(reference: dict[str, Any], samples: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]):
    """Count sampled inputs and predictions on the reference histograms' bins."""
    features: dict[str, list[int]] = {}
    if not samples:
        return features, None
    for ref in reference.get("features", []):
        values = [_feature_values(f, ref) for f, _ in samples]
        values = [v for v in values if v is not None]
        if values:
            features[ref["feature"]] = bin_counts(ref, np.concatenate(values))
    prediction = None
    ref_pred = reference.get("prediction")
    if ref_pred and ref_pred.get("output"):
        preds = [_prediction_values(o, ref_pred) for _, o in samples]
        preds = [p for p in preds if p is not None]
        if preds:
            prediction = bin_counts(ref_pred, np.concatenate(preds))
    return features, prediction


def _feature_values(feeds: dict[str, np.ndarray], ref: dict[str, Any]) -> np.ndarray | None:
    arr = feeds.get(ref["input"])
    if arr is None:
        return None
    if ref.get("index") is None:
        return np.asarray(arr).reshape(-1)
    arr = np.asarray(arr)
    return arr[:, ref["index"]].reshape(-1) if arr.ndim == 2 else None


def _prediction_values(outputs: dict[str, np.ndarray], ref: dict[str, Any]) -> np.ndarray | None:
    out = outputs.get(ref["output"])
    if out is None:
        return None
    out = np.asarray(out)
    if ref["kind"] == "categorical" and out.ndim == 2 and out.shape[1] > 1 and out.dtype.kind == "f":
        return out.argmax(axis=1)
    return out.reshape(-1)
