"""Prometheus metrics in the text exposition format, with no client library (the device stays small).

Counters end in `_total`, durations are histograms in seconds. Updates take one lock and a few
dict operations; rendering happens only when /metrics is scraped.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

Labels = tuple[tuple[str, str], ...]

# Inference on a device is fast: resolve 100 µs steps at the low end.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


class _Metric:
    def __init__(self, name: str, help: str, kind: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> Labels:
        return tuple((k, str(labels[k])) for k in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    def __init__(self, name: str, help: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help, "counter", label_names)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels_text(k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    def __init__(self, name: str, help: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help, "gauge", label_names)
        self._values: dict[Labels, float] = {}

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = value

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def replace(self, value: float, **labels: str) -> None:
        """Drop every other label set, then set this one (an info gauge after a model swap)."""
        with self._lock:
            self._values = {self._key(labels): value}

    def clear(self) -> None:
        with self._lock:
            self._values = {}

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels_text(k)} {_number(v)}" for k, v in items]


class Histogram(_Metric):
    def __init__(self, name: str, help: str, label_names: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help, "histogram", label_names)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, list[float]] = {}  # per-bucket counts (+Inf last), then sum

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.buckets) + 2)
            series[index] += 1
            series[-1] += value

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return int(sum(series[:-1])) if series else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        lines = self.header()
        for key, series in items:
            cumulative = 0.0
            for bound, n in zip(self.buckets + (float("inf"),), series[:-1]):
                cumulative += n
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels_text(key, le)} {_number(cumulative)}")
            lines.append(f"{self.name}_sum{_labels_text(key)} {repr(series[-1])}")
            lines.append(f"{self.name}_count{_labels_text(key)} {_number(cumulative)}")
        return lines


class Registry:
    """The metrics one daemon exports."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _Metric):
        self._metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.render())
        return ("\n".join(lines) + "\n").encode()


class ServerMetrics:
    """Request counts, errors, latency and the served model, as exported by `edgeml serve`."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.add(Counter("edgeml_requests_total", "HTTP requests handled, by endpoint and status code.", ("endpoint", "code")))
        self.errors = r.add(Counter("edgeml_request_errors_total", "Requests answered with an error, by endpoint and reason.", ("endpoint", "reason")))
        self.duration = r.add(Histogram("edgeml_request_duration_seconds", "Time from request received to response ready, by endpoint.", ("endpoint",)))
        self.inference = r.add(Histogram("edgeml_inference_duration_seconds", "Time spent in the model (backend run, including micro-batch wait).", ()))
        self.model_info = r.add(Gauge("edgeml_model_info", "The model being served (value 1); labels say which.", ("model", "version", "backend", "format", "precision")))
        self.ready = r.add(Gauge("edgeml_model_ready", "1 when a model is loaded and ready to serve, else 0."))
        self.swaps = r.add(Counter("edgeml_model_swaps_total", "Models activated at run time (the first load counts)."))
        self.connections = r.add(Gauge("edgeml_connections", "Open client connections."))
        self.evictions = r.add(Counter("edgeml_connections_evicted_total", "Idle or slow connections closed to admit a new one, by why (server_full, client_limit).", ("why",)))
        self.timeouts = r.add(Counter("edgeml_request_timeouts_total", "Requests cut off by a deadline, by phase (header, body).", ("phase",)))
        self.cache_hits = r.add(Counter("edgeml_cache_hits_total", "Infer requests answered from the prediction cache (--cache)."))
        self.cache_misses = r.add(Counter("edgeml_cache_misses_total", "Infer requests the prediction cache did not hold (the model ran)."))
        self.cache_entries = r.add(Gauge("edgeml_cache_entries", "Entries in the prediction cache (emptied on a model swap)."))
        self.cache_capacity = r.add(Gauge("edgeml_cache_capacity", "Entries the prediction cache holds at most (0 = off)."))
        self.ready.set(0)
        self.connections.set(0)
        self.cache_entries.set(0)
        self.cache_capacity.set(0)
        self.cache_hits.inc(0)
        self.cache_misses.inc(0)

    def render(self) -> bytes:
        return self.registry.render()
