"""Health gates of a wave, computed from the telemetry of its soak window.

The new version's devices are compared with the devices still on the previous version (the A/B
baseline arm in A/B mode; the active model of the same devices in shadow mode). Each gate is
{name, value, threshold, passed}; `value` is None while there is no data for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..drift import psi
from ..telemetry import aggregate, drift_for, latency_quantiles, live_histograms
from .models import Gates, Mode

FAILING_GATES = ("install_failures", "error_rate", "p99_ratio", "drift_psi")
# Below this many requests in a group a p99 or a PSI is noise (one slow request is the p99 of 50): the
# gate has no value yet and the wave keeps soaking. The error rate has no such floor: errors are errors.
MIN_SAMPLES = 200
LATENCY_MIN_SAMPLES = 500  # a p99 needs more: with 200 requests it is the second-slowest one


@dataclass
class Window:
    """What the gates look at: telemetry rows of the soak window, split by group."""

    new_rows: list[dict[str, Any]]
    old_rows: list[dict[str, Any]]
    install_failures: int
    assigned: int  # devices assigned the new version so far (all waves up to the current one)
    manifest: dict[str, Any] | None = None  # the new version's manifest (drift reference)
    baseline: dict[str, Any] | None = None  # previous-version numbers remembered from an earlier window


@dataclass
class Evaluation:
    gates: list[dict[str, Any]]
    numbers: dict[str, Any]
    baseline: dict[str, Any] | None
    comparison: dict[str, Any] | None = None
    failed: list[str] = field(default_factory=list)
    ready: bool = False  # enough devices reported and every gate has a value (or needs none)

    @property
    def install_failed(self) -> bool:
        return "install_failures" in self.failed


def gate(name: str, value: float | None, threshold: float, passed: bool) -> dict[str, Any]:
    return {"name": name, "value": None if value is None else round(float(value), 6), "threshold": threshold, "passed": passed}


def evaluate(mode: Mode, limits: Gates, window: Window) -> Evaluation:
    if mode is Mode.SHADOW:
        return _evaluate_shadow(limits, window)
    new, old = group_stats(window.new_rows), group_stats(window.old_rows)
    baseline = old if old.get("latency_p99_s") and old["requests"] >= LATENCY_MIN_SAMPLES else window.baseline
    required = min(limits.min_reporting, max(1, window.assigned))
    ratio = None
    if new.get("latency_p99_s") and baseline and baseline.get("latency_p99_s") and new["requests"] >= LATENCY_MIN_SAMPLES \
            and baseline["requests"] >= LATENCY_MIN_SAMPLES:
        ratio = new["latency_p99_s"] / baseline["latency_p99_s"]
    drift = drift_for(window.new_rows, window.manifest) if new["requests"] >= MIN_SAMPLES else None
    drift_psi = drift["max_psi"] if drift else None
    gates = [
        gate("install_failures", window.install_failures, limits.max_install_failures,
             window.install_failures <= limits.max_install_failures),
        gate("min_reporting", new["devices"], required, new["devices"] >= required),
        gate("error_rate", new.get("error_rate") if new["requests"] else None, limits.max_error_rate,
             bool(new["requests"]) and new["error_rate"] <= limits.max_error_rate),
        # No previous-version latency at all (a fleet with no baseline): nothing to compare, the gate passes.
        gate("p99_ratio", ratio, limits.max_p99_ratio, ratio is None and not (baseline or {}).get("latency_p99_s")
             or ratio is not None and ratio <= limits.max_p99_ratio),
        gate("drift_psi", drift_psi, limits.max_drift_psi, drift_psi is None or drift_psi <= limits.max_drift_psi),
    ]
    numbers = {"new": new, "old": old if old["messages"] else (window.baseline or old), "assigned": window.assigned,
               **{g["name"]: g["value"] for g in gates}}
    failed = [g["name"] for g in gates if g["name"] in FAILING_GATES and g["value"] is not None and not g["passed"]]
    ready = gates[1]["passed"] and new["requests"] >= MIN_SAMPLES and (ratio is not None or not (baseline or {}).get("latency_p99_s"))
    return Evaluation(gates, numbers, baseline, None, failed, ready)


def group_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates of one group, trimmed to what gates and comparisons use, plus its prediction histogram."""
    agg = aggregate(rows)
    out = {k: agg.get(k) for k in ("messages", "requests", "errors", "error_rate", "latency_p50_s", "latency_p99_s")}
    out["devices"] = len({r["device_id"] for r in rows if r["payload"].get("requests", 0) > 0})
    _, prediction = live_histograms(rows)
    out["prediction"] = prediction
    return out


def compare_ab(baseline_rows: list[dict[str, Any]], candidate_rows: list[dict[str, Any]],
               baseline_version: str, version: str) -> dict[str, Any]:
    """Latency, errors and prediction distributions of the two arms; PSI between their prediction histograms."""
    a, b = group_stats(baseline_rows), group_stats(candidate_rows)
    pred_psi = None
    if a["prediction"] and b["prediction"] and len(a["prediction"]) == len(b["prediction"]):
        pred_psi = round(psi(a["prediction"], b["prediction"]), 6)
    ratio = b["latency_p99_s"] / a["latency_p99_s"] if a.get("latency_p99_s") and b.get("latency_p99_s") else None
    return {"kind": "ab", "baseline": {"version": baseline_version, **a}, "candidate": {"version": version, **b},
            "prediction_psi": pred_psi, "latency_p99_ratio": ratio,
            "error_rate_delta": (b["error_rate"] or 0.0) - (a["error_rate"] or 0.0) if a["requests"] and b["requests"] else None}


def shadow_stats(rows: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """Sum the devices' `shadow` telemetry blocks for `version`: requests, agreement, errors, latency."""
    requests = agreed = errors = 0
    devices: set[str] = set()
    latencies = []
    for r in rows:
        s = r["payload"].get("shadow")
        if not isinstance(s, dict) or s.get("version") != version:
            continue
        requests += int(s.get("requests", 0))
        agreed += int(s.get("agreed", 0))
        errors += int(s.get("errors", 0))
        if s.get("requests"):
            devices.add(r["device_id"])
        lat = s.get("latency")
        if isinstance(lat, dict) and lat.get("counts"):
            latencies.append(lat)
    out: dict[str, Any] = {"version": version, "devices": len(devices), "requests": requests, "errors": errors,
                           "agreement": agreed / (requests - errors) if requests > errors else None,
                           "error_rate": errors / requests if requests else None}
    out.update(latency_quantiles(latencies, (50, 99)))
    return out


def _evaluate_shadow(limits: Gates, window: Window) -> Evaluation:
    """Shadow: the candidate's install failures and errors gate; agreement and latency are reported.

    The candidate's latency is measured off the request path, in a background thread that competes with
    serving, so it is compared in `comparison` but not gated.
    """
    version = (window.manifest or {}).get("version", "")
    shadow = shadow_stats(window.new_rows, version)
    active = group_stats([r for r in window.new_rows if (r["payload"].get("shadow") or {}).get("version") == version])
    required = min(limits.min_reporting, max(1, window.assigned))
    ratio = (shadow["latency_p99_s"] / active["latency_p99_s"] if shadow.get("latency_p99_s") and active.get("latency_p99_s")
             and shadow["requests"] >= MIN_SAMPLES else None)
    gates = [
        gate("install_failures", window.install_failures, limits.max_install_failures,
             window.install_failures <= limits.max_install_failures),
        gate("min_reporting", shadow["devices"], required, shadow["devices"] >= required),
        gate("error_rate", shadow["error_rate"], limits.max_error_rate,
             shadow["error_rate"] is not None and shadow["error_rate"] <= limits.max_error_rate),
    ]
    comparison = {"kind": "shadow", **shadow, "active_latency_p50_s": active.get("latency_p50_s"),
                  "active_latency_p99_s": active.get("latency_p99_s"), "latency_p99_ratio": ratio}
    numbers = {"shadow": shadow, "active": {k: v for k, v in active.items() if k != "prediction"},
               "assigned": window.assigned, **{g["name"]: g["value"] for g in gates}}
    failed = [g["name"] for g in gates if g["name"] in FAILING_GATES and g["value"] is not None and not g["passed"]]
    ready = gates[1]["passed"] and shadow["requests"] >= MIN_SAMPLES
    return Evaluation(gates, numbers, None, comparison, failed, ready)
