"""Optional parts of a `Telemetry` message: the device's prediction cache and data capture counters.

Counts (hits, misses, captured, uploaded, dropped) are since the previous telemetry message, like
`requests`; `entries` and `capacity` are the cache's state when the message was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from .fields import Json, _bad, _int, _load, _object, _opt, _req, _Message


@dataclass(frozen=True)
class CacheTelemetry(_Message):
    """The interval's prediction cache lookups and the cache's size (sent only when the cache is on)."""

    hits: int
    misses: int
    entries: int
    capacity: int

    @classmethod
    def parse(cls, obj: Any, where: str = "cache") -> Self:
        obj = _object(_load(obj, where), where)
        hits, misses = _req(obj, "hits", where, _int), _req(obj, "misses", where, _int)
        entries, capacity = _req(obj, "entries", where, _int), _req(obj, "capacity", where, _int, 1)
        if entries > capacity:
            raise _bad(f"{where}.entries", "must not exceed capacity")
        return cls(hits, misses, entries, capacity)

    def to_dict(self) -> Json:
        return {"hits": self.hits, "misses": self.misses, "entries": self.entries, "capacity": self.capacity}


@dataclass(frozen=True)
class CaptureTelemetry(_Message):
    """The interval's data capture: rows written to the device buffer, uploaded, and dropped (buffer full)."""

    captured: int = 0
    uploaded: int = 0
    dropped: int = 0

    @classmethod
    def parse(cls, obj: Any, where: str = "capture") -> Self:
        obj = _object(_load(obj, where), where)
        return cls(**{k: _opt(obj, k, where, _int) or 0 for k in ("captured", "uploaded", "dropped")})

    def to_dict(self) -> Json:
        return {"captured": self.captured, "uploaded": self.uploaded, "dropped": self.dropped}
