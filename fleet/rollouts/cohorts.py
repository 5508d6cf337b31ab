"""Deterministic cohorts: a device's position in [0, 1) comes from a hash of its id alone.

The salt does not depend on the rollout, so a device holds the same position in every rollout: the
canaries of one rollout are the canaries of the next, and a device never moves between waves. Wave k
holds the devices with position < percent_k / 100 (cumulative); the first wave always holds at least
the lowest-positioned device, so a canary wave is never empty.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

COHORT_SALT = "edgeml-cohort-v1:"
AB_SALT = "edgeml-ab-v1:"


def _unit(salt: str, device_id: str) -> float:
    digest = hashlib.sha256((salt + device_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def position(device_id: str) -> float:
    return _unit(COHORT_SALT, device_id)


def wave_of(device_id: str, waves: list[float], canary: str | None = None) -> int | None:
    """Index of the first wave that holds the device (None: outside every wave)."""
    if canary is not None and device_id == canary:
        return 0
    p = position(device_id)
    for i, percent in enumerate(waves):
        if p < percent / 100:
            return i
    return None


def canary_of(device_ids: Iterable[str]) -> str | None:
    """The lowest-positioned device: always in the first wave."""
    return min(device_ids, key=position, default=None)


def members(device_ids: Iterable[str], waves: list[float], upto: int) -> dict[str, int]:
    """{device: wave} for the devices in waves 0..upto."""
    ids = list(device_ids)
    canary = canary_of(ids)
    out = {}
    for d in ids:
        w = wave_of(d, waves, canary)
        if w is not None and w <= upto:
            out[d] = w
    return out


def ab_arm(device_id: str, ab_percent: float) -> str:
    """'candidate' for ab_percent % of devices (a hash independent of the cohort position), else 'baseline'."""
    return "candidate" if _unit(AB_SALT, device_id) < ab_percent / 100 else "baseline"
