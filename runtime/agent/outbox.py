"""A bounded on-disk outbox for what the device sends the fleet (oldest dropped first, counted).

Two lifetimes:
- a message put without `seq` (events) is spooled while the broker is away and deleted once published;
- a message put with `seq` (telemetry) stays on disk until the fleet acknowledges it (`ack(seq)`: every
  message with seq <= N is stored, edgeml.messages.TelemetryAck). It is published when put, again after
  every reconnect, and again when it stays unacknowledged (`RESEND_AFTER_S` after its last send, or
  `ACK_GRACE_S` when acknowledgements of older messages keep arriving without it: it was lost between
  the broker and the fleet). The fleet stores each (device, seq) once, so resending is safe.

After a (re)connect the outbox first probes: it sends only the oldest unacknowledged telemetry message
(again every `PROBE_RESEND_S`) until the fleet acknowledges it, and only then the rest, in order. A
broker restarted without persistence has no fleet subscription until the fleet reconnects: what is
sent before is lost, and a fleet acknowledging the highest seq it stored would otherwise acknowledge
past those lost messages. A fleet that acknowledges nothing within `PROBE_GIVE_UP_S` ends the probe.

Beyond `max_messages` the oldest are dropped and counted (`dropped`, sent as Telemetry.dropped). The
highest telemetry sequence number and the drop count survive restarts (outbox/.state.json), so
sequence numbers stay monotonic.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path
from typing import Callable

from edgeml.atomic import atomic_write_bytes, atomic_write_json

RESEND_AFTER_S = 60.0
ACK_GRACE_S = 10.0
PROBE_RESEND_S = 2.0
PROBE_GIVE_UP_S = 30.0
STATE_NAME = ".state.json"

Send = Callable[[str, bytes], bool]  # (kind, payload) -> published


class Outbox:
    def __init__(self, root: Path, max_messages: int = 1000) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._sent: dict[str, float] = {}  # file name -> monotonic time of its last send (kept-until-ack only)
        self._last_ack_at: float | None = None
        self.acked = 0
        self._probe_since: float | None = None  # monotonic start of the probe after a reconnect; None: not probing
        self._probe_seq: int | None = None
        state = self._read_state()
        self.dropped = int(state.get("dropped", 0))
        self.last_seq = max([int(state.get("seq", 0))] + [s for s in map(_seq_of, self._files()) if s is not None])

    # -- writing ---------------------------------------------------------------------------------
    def put(self, kind: str, payload: bytes, seq: int | None = None) -> None:
        """Spool `payload`; with `seq`, keep it until acknowledged."""
        with self._lock:
            tag = "" if seq is None else f"-s{seq}"
            name = f"{time.time_ns():020d}-{next(self._counter):06d}{tag}.{kind}"
            atomic_write_bytes(self.root / name, payload)
            if seq is not None and seq > self.last_seq:
                self.last_seq = seq
            files = self._files()
            excess = files[: max(0, len(files) - self.max_messages)]
            for old in excess:
                old.unlink(missing_ok=True)
                self._sent.pop(old.name, None)
            self.dropped += len(excess)
            if seq is not None or excess:
                self._save_state()

    def ack(self, seq: int) -> int:
        """The fleet stored every message with sequence <= seq: delete those; returns how many."""
        removed = 0
        with self._lock:
            self._last_ack_at = time.monotonic()
            self.acked = max(self.acked, seq)
            if self._probe_seq is not None and seq >= self._probe_seq:
                self._probe_since = self._probe_seq = None  # the fleet is listening again: send the rest
            if seq > self.last_seq:  # the store was reset but the fleet remembers: continue above its ack
                self.last_seq = seq
                self._save_state()
            for path in self._files():
                s = _seq_of(path)
                if s is not None and s <= seq:
                    path.unlink(missing_ok=True)
                    self._sent.pop(path.name, None)
                    removed += 1
        return removed

    def resend_all(self) -> None:
        """After a reconnect every unacknowledged message is due again, after a probe (module docstring)."""
        with self._lock:
            self._sent.clear()
            self._probe_since, self._probe_seq = time.monotonic(), None

    @property
    def probing(self) -> bool:
        return self._probe_since is not None

    # -- reading ---------------------------------------------------------------------------------
    def pending(self) -> int:
        return len(self._files())

    def unsent(self) -> int:
        """Messages never published in this process (events spooled, telemetry not yet sent)."""
        with self._lock:
            return sum(1 for p in self._files() if p.name not in self._sent)

    def drain(self, send: Send) -> int:
        """Publish due messages oldest first with send(kind, payload) -> bool; stop at the first failure.
        Messages without seq are deleted once sent; the others wait for their acknowledgement."""
        sent = 0
        now = time.monotonic()
        with self._lock:
            if self._probe_since is not None and now - self._probe_since > PROBE_GIVE_UP_S:
                self._probe_since = self._probe_seq = None
            probe_sent = False
            for path in self._files():
                seq = _seq_of(path)
                keep = seq is not None
                if keep and self._probe_since is not None:
                    if probe_sent:
                        continue  # while probing only the oldest unacknowledged message goes out
                    probe_sent, self._probe_seq = True, seq
                    last = self._sent.get(path.name)
                    if last is not None and now - last < PROBE_RESEND_S:
                        continue
                elif keep and not self._due(path.name, now):
                    continue
                try:
                    payload = path.read_bytes()
                except FileNotFoundError:
                    continue
                if not send(path.suffix.lstrip("."), payload):
                    break
                if keep:
                    self._sent[path.name] = now
                else:
                    path.unlink(missing_ok=True)
                sent += 1
        return sent

    def _due(self, name: str, now: float) -> bool:
        last = self._sent.get(name)
        if last is None or now - last > RESEND_AFTER_S:
            return True
        return self._last_ack_at is not None and self._last_ack_at - last > ACK_GRACE_S

    def _files(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if not p.name.startswith("."))

    def _read_state(self) -> dict:
        try:
            state = json.loads((self.root / STATE_NAME).read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        atomic_write_json(self.root / STATE_NAME, {"seq": self.last_seq, "dropped": self.dropped})


def _seq_of(path: Path) -> int | None:
    """The telemetry sequence number in a kept-until-ack file name (…-sSEQ.kind), else None."""
    _, sep, tail = path.stem.rpartition("-s")
    return int(tail) if sep and tail.isdigit() else None
