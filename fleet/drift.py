"""Drift of live feature/prediction histograms against the bundle's reference: PSI and a binned KS test.

Both sides use the bundle's fixed bins, so a device only ships counts. PSI thresholds: < 0.1 stable,
0.1-0.25 moderate, > 0.25 significant (the conventional defaults; configurable).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EPS = 1e-4
PSI_WARN, PSI_ALERT = 0.1, 0.25
MIN_KS_SAMPLES = 30


def psi(reference: list[float] | np.ndarray, live: list[float] | np.ndarray) -> float:
    """Population stability index of live counts against reference counts on the same bins (0 if either is empty)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    if len(ref) != len(cur):
        raise ValueError(f"PSI compares counts on the same bins: {len(ref)} reference bins, {len(cur)} live")
    if ref.sum() <= 0 or cur.sum() <= 0:
        return 0.0
    p = np.clip(ref / ref.sum(), EPS, None)
    q = np.clip(cur / cur.sum(), EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_binned(reference: list[float], live: list[float]) -> tuple[float, float] | None:
    """KS statistic on the binned CDFs and its asymptotic p-value; None with too few samples."""
    ref, cur = np.asarray(reference, np.float64), np.asarray(live, np.float64)
    if len(ref) != len(cur):
        raise ValueError(f"KS compares counts on the same bins: {len(ref)} reference bins, {len(cur)} live")
    n, m = ref.sum(), cur.sum()
    if n < MIN_KS_SAMPLES or m < MIN_KS_SAMPLES:
        return None
    d = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, float(min(1.0, max(0.0, p)))


def level(value: float, warn: float = PSI_WARN, alert: float = PSI_ALERT) -> str:
    return "alert" if value > alert else "warn" if value > warn else "ok"


def drift_report(reference: dict[str, Any], live_features: dict[str, list[int]], live_prediction: list[int] | None,
                 warn: float = PSI_WARN, alert: float = PSI_ALERT) -> dict[str, Any]:
    """Per-feature and prediction PSI (+ KS where samples allow) of summed live counts vs the reference."""
    features = []
    for ref in reference.get("features", []):
        live = live_features.get(ref["feature"])
        if not live or len(live) != len(ref["counts"]):  # no data, or counted on other bins: not comparable
            continue
        value = psi(ref["counts"], live)
        entry = {"feature": ref["feature"], "psi": round(value, 5), "level": level(value, warn, alert), "samples": int(sum(live))}
        ks = ks_binned(ref["counts"], live) if ref.get("kind") == "numeric" else None
        if ks:
            entry["ks_statistic"], entry["ks_pvalue"] = round(ks[0], 5), ks[1]
        features.append(entry)
    out: dict[str, Any] = {"features": features, "thresholds": {"warn": warn, "alert": alert}}
    ref_pred = reference.get("prediction")
    if ref_pred and live_prediction and len(live_prediction) == len(ref_pred["counts"]):
        value = psi(ref_pred["counts"], live_prediction)
        out["prediction"] = {"psi": round(value, 5), "level": level(value, warn, alert), "samples": int(sum(live_prediction))}
    worst = max([f["psi"] for f in features] + [out.get("prediction", {}).get("psi", 0.0)], default=0.0)
    out["max_psi"], out["level"] = worst, level(worst, warn, alert)
    return out
