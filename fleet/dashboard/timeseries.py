"""A device's telemetry as time series for the dashboard's charts: one point per telemetry message.

Rates, error rate, latency quantiles, CPU and RSS come from the message alone. Drift needs more samples
than one message holds, so each point's PSI sums the feature histograms of the messages of the same
version received in the trailing `drift_window_s` and compares them with that version's reference
(no value while the window holds fewer than MIN_SAMPLES samples).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from edgeml.histograms import HistogramSum

from ..drift import psi
from ..telemetry import latency_quantiles

Manifests = Callable[[str | None, str | None], dict[str, Any] | None]
MAX_POINTS = 2000
MIN_SAMPLES = 30  # fewer samples in the window: no PSI (it would be noise)


def device_timeseries(rows: list[dict[str, Any]], manifests: Manifests, drift_window_s: float) -> dict[str, Any]:
    """Points ordered by time (the device's `ts`, else the time the fleet received the message)."""
    rows = sorted(rows, key=_ts)
    points = [_point(r) for r in rows]
    drift = _trailing_drift(rows, manifests, drift_window_s)
    for point, (features, prediction) in zip(points, drift):
        point["drift"], point["prediction_psi"] = features, prediction
    features = sorted({name for p in points for name in p["drift"]})
    stride = max(1, -(-len(points) // MAX_POINTS))
    return {"features": features, "drift_window_s": drift_window_s, "points": points[::-1][::stride][::-1]}


def _ts(row: dict[str, Any]) -> float:
    ts = row["payload"].get("ts")
    return float(ts) if isinstance(ts, (int, float)) else float(row["received_at"])


def _point(row: dict[str, Any]) -> dict[str, Any]:
    p = row["payload"]
    requests, errors = p["requests"], p["errors"]
    point: dict[str, Any] = {
        "ts": _ts(row), "version": row["version"],
        "request_rate": requests / p["interval_s"], "error_rate": errors / requests if requests else 0.0,
        "errors": errors, "latency_p50_s": None, "latency_p99_s": None,
        "cpu_percent": p.get("cpu_percent"), "rss_bytes": p.get("rss_bytes"),
    }
    point.update(latency_quantiles([p.get("latency")], (50, 99)))
    return point


def _trailing_drift(rows: list[dict[str, Any]], manifests: Manifests,
                    window_s: float) -> list[tuple[dict[str, float], float | None]]:
    """Per row: PSI per feature and of the predictions over the trailing window of same-version messages."""
    out: list[tuple[dict[str, float], float | None]] = []
    window: deque[dict[str, Any]] = deque()
    sums = _Histograms()
    for row in rows:
        if window and (window[-1]["model"], window[-1]["version"]) != (row["model"], row["version"]):
            window.clear()
            sums = _Histograms()
        window.append(row)
        sums.add(row["payload"], +1)
        while _ts(window[0]) <= _ts(row) - window_s:
            sums.add(window.popleft()["payload"], -1)
        reference = (manifests(row["model"], row["version"]) or {}).get("reference") or {}
        out.append(sums.psi(reference))
    return out


class _Histograms:
    """Running sums of feature and prediction counts (added and removed as the window slides)."""

    def __init__(self) -> None:
        self.features: dict[str, HistogramSum] = {}
        self.prediction = HistogramSum()

    def add(self, payload: dict[str, Any], sign: int) -> None:
        for name, counts in (payload.get("features") or {}).items():
            self.features.setdefault(name, HistogramSum()).add(counts, sign=sign)
        if payload.get("prediction"):
            self.prediction.add(payload["prediction"], sign=sign)

    def psi(self, reference: dict[str, Any]) -> tuple[dict[str, float], float | None]:
        features = {}
        for ref in reference.get("features", []):
            live = self.features.get(ref["feature"])
            if live is not None and live.total >= MIN_SAMPLES and len(live.counts) == len(ref["counts"]):
                features[ref["feature"]] = round(psi(ref["counts"], live.counts), 5)
        ref_pred = reference.get("prediction")
        prediction = None
        if ref_pred and self.prediction.total >= MIN_SAMPLES and len(self.prediction.counts) == len(ref_pred["counts"]):
            prediction = round(psi(ref_pred["counts"], self.prediction.counts), 5)
        return features, prediction
