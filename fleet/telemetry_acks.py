"""Telemetry acknowledgements: after rows are committed, tell each device the highest seq stored.

The fleet publishes `TelemetryAck(seq=N)` retained, QoS 1, on `PREFIX/devices/ID/telemetry_ack`: every
telemetry message of that device with seq <= N is durably stored (duplicates count: a copy stored
earlier is stored), so the device may drop them from its outbox. Retained, so a device that
reconnects learns where it stands at once. Acks are batched: at most one per device per
`MIN_INTERVAL_S`; a newer ack replaces a pending one; a stored row at or below the last ack (a
device resending after a reconnect) sends that ack again; a publish that fails (broker away) is
retried on the next flush; `flush(force=True)` on a clean stop sends what is pending.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from edgeml.messages import TelemetryAck
from edgeml.protocol import Topics

log = logging.getLogger("edgeml.fleet")
Publish = Callable[[str, bytes, bool], None]  # topic, payload, retain
MIN_INTERVAL_S = 1.0
MAX_DEVICES = 100_000  # devices with a pending ack; beyond, a new device waits for its next stored row


class TelemetryAcks:
    def __init__(self, publish: Publish, topics: Topics, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.publish, self.topics, self.min_interval_s = publish, topics, min_interval_s
        self._pending: dict[str, int] = {}
        self._sent: dict[str, tuple[int, float]] = {}  # device -> (seq, when)
        self._lock = threading.Lock()
        self.published = 0

    def stored(self, rows: Iterable[tuple[str, int]]) -> None:
        """(device_id, seq) of rows just committed (or found already stored)."""
        with self._lock:
            for device_id, seq in rows:
                # A resend of what was acked already gets the ack again: the broker may have lost the
                # retained one (a restart without persistence), and the device waits for it.
                best = max(seq, self._pending.get(device_id, -1), self._sent.get(device_id, (-1, 0.0))[0])
                if device_id in self._pending or len(self._pending) < MAX_DEVICES:
                    self._pending[device_id] = best

    def flush(self, force: bool = False) -> int:
        """Publish the pending acks that are due (all of them with force); returns how many were sent."""
        now = time.monotonic()
        with self._lock:
            due = {d: s for d, s in self._pending.items()
                   if force or now - self._sent.get(d, (-1, -1e9))[1] >= self.min_interval_s}
        sent = 0
        for device_id, seq in due.items():
            try:
                self.publish(self.topics.device(device_id, "telemetry_ack"), TelemetryAck(seq=seq).to_json(), True)
            except Exception as exc:  # broker away: keep it pending, the next flush retries
                log.debug("telemetry ack for %s not sent: %s", device_id, exc)
                continue
            sent += 1
            with self._lock:
                self._sent[device_id] = (seq, now)
                if self._pending.get(device_id) == seq:
                    del self._pending[device_id]
        self.published += sent
        return sent

    def last_sent(self, device_id: str) -> int | None:
        with self._lock:
            found = self._sent.get(device_id)
        return None if found is None else found[0]
