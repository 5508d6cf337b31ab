"""The prediction cache and data capture counters of a device's telemetry, summed over the window.

Device detail shows them under `telemetry.cache` (hits, misses, hit_rate, and the newest entries and
capacity) and `telemetry.capture` (captured, uploaded, dropped); each is absent when no message in the
window carried it (cache off, capture never applied).
"""

from __future__ import annotations

from typing import Any


def counter_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{"cache": …, "capture": …} over stored telemetry rows (parsed payloads), oldest first or not."""
    out: dict[str, Any] = {}
    ordered = sorted(rows, key=lambda r: r["received_at"])
    caches = [r["payload"]["cache"] for r in ordered if r["payload"].get("cache")]
    if caches:
        hits, misses = sum(c["hits"] for c in caches), sum(c["misses"] for c in caches)
        out["cache"] = {"hits": hits, "misses": misses, "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                        "entries": caches[-1]["entries"], "capacity": caches[-1]["capacity"]}
    captures = [r["payload"]["capture"] for r in ordered if r["payload"].get("capture")]
    if captures:
        out["capture"] = {k: sum(c[k] for c in captures) for k in ("captured", "uploaded", "dropped")}
    return out
