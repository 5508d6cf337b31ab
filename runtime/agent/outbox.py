"""A bounded on-disk spool for telemetry while the broker is unreachable (oldest dropped first)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

from edgeml.atomic import atomic_write_bytes


class Outbox:
    def __init__(self, root: Path, max_messages: int = 1000) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self.dropped = 0
        self._lock = threading.Lock()
        self._counter = itertools.count()

    def put(self, topic_kind: str, payload: bytes) -> None:
        with self._lock:
            name = f"{time.time_ns():020d}-{next(self._counter):06d}.{topic_kind}"
            atomic_write_bytes(self.root / name, payload)
            files = self._files()
            for old in files[: max(0, len(files) - self.max_messages)]:
                old.unlink(missing_ok=True)
                self.dropped += 1

    def pending(self) -> int:
        return len(self._files())

    def drain(self, send) -> int:
        """Send spooled messages oldest first with send(kind, payload) -> bool; stop at the first failure."""
        sent = 0
        with self._lock:
            for path in self._files():
                try:
                    payload = path.read_bytes()
                except FileNotFoundError:
                    continue
                if not send(path.suffix.lstrip("."), payload):
                    break
                path.unlink(missing_ok=True)
                sent += 1
        return sent

    def _files(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if not p.name.startswith("."))
