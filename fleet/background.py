"""A daemon thread for one of the fleet's periodic jobs (capture retention, desired-document renewal,
the retrain monitor): started once, stopped by setting its event and joining."""

from __future__ import annotations

import threading
from typing import Callable


class Background:
    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        self.name, self.target, self.stop_event = name, target, stop
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.target, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
