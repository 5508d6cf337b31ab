"""Shadow deployments on the device: a candidate model installed beside the active one.

The fleet's desired document may carry a `shadow` candidate (model, version, manifest/blob URLs). The
candidate is installed and smoke-tested under STORE/shadow/ (never activated, never served). The
request path only offers a sample of (feeds, outputs) to a bounded queue; one worker thread runs the
candidate on them, compares its outputs with the active model's and times it. Telemetry carries
`shadow: {version, requests, agreed, errors, agreement, latency_p50_s, latency_p99_s, latency, skipped}`.
The candidate's outputs never leave the device.
"""

from __future__ import annotations

import bisect
import logging
import queue
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeml.compare import outputs_agree
from edgeml.messages import LatencyHistogram, ShadowSpec, ShadowState, ShadowTelemetry, clip

from ..metrics import LATENCY_BUCKETS
from .installer import InstallFailed, Installer
from .store import DeviceStore

log = logging.getLogger("edgeml.agent.shadow")

QUEUE_SIZE = 64  # mirrored requests waiting for the candidate; when full, new ones are skipped (counted)
MAX_LATENCIES = 2000  # per interval, for the percentiles
Event = Callable[..., None]


class ShadowRunner:
    def __init__(self, root: Path, make_installer: Callable[[DeviceStore], Installer], sample: float = 0.25) -> None:
        self.root = Path(root)
        self.make_installer = make_installer
        self.default_sample = self.sample = sample  # a shadow spec's own `sample` overrides the default
        self.model: Any = None
        self.target: tuple[str, str] | None = None
        self.state: str | None = None  # installing / active / failed
        self.error: str | None = None
        self._queue: queue.Queue[tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]] | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._reset()
        self._thread: threading.Thread | None = None

    def _reset(self) -> None:
        self.requests = self.agreed = self.errors = self.skipped = 0
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latencies: list[float] = []

    # -- desired state (the agent's installer thread) -------------------------------------------
    def update(self, spec: ShadowSpec | None, event: Event) -> None:
        """Install the candidate `spec` describes (or remove the shadow when spec is None)."""
        target = (spec.model, spec.version) if spec else None
        self.sample = spec.sample if spec is not None and spec.sample is not None else self.default_sample
        if target == self.target and self.state in ("active", "failed"):
            return
        self._drop()
        if target is None:
            return
        self.target, self.state, self.error = target, "installing", None
        info = {"model": target[0], "version": target[1]}
        try:
            installed = self.make_installer(DeviceStore(self.root)).install(spec)
        except InstallFailed as exc:
            self.state, self.error = "failed", f"{exc.reason}: {exc.detail}"
            event("shadow_install_failed", reason=exc.reason, detail=exc.detail, **info)
            return
        except Exception as exc:  # the shadow must never take the daemon down
            log.exception("shadow install crashed")
            self.state, self.error = "failed", f"internal_error: {exc}"
            event("shadow_install_failed", reason="internal_error", detail=str(exc), **info)
            return
        with self._lock:
            self._reset()
            self.model, self.state = installed.model, "active"
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="agent-shadow", daemon=True)
            self._thread.start()
        event("shadow_installed", **info)

    def _drop(self) -> None:
        with self._lock:
            self.model, self.target, self.state, self.error = None, None, None, None
            self._reset()
        shutil.rmtree(self.root / "models", ignore_errors=True)

    def stop(self) -> None:
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout=5)

    # -- request path: O(1), never blocks --------------------------------------------------------
    def offer(self, model: Any, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray], _seconds: float) -> None:
        if self.model is None or random.random() >= self.sample:
            return
        try:
            self._queue.put_nowait((self.model, feeds, outputs))
        except queue.Full:
            self.skipped += 1

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            candidate, feeds, active_outputs = item
            t0 = time.perf_counter()
            try:
                outputs = candidate.predict(feeds)
            except Exception:  # a candidate that fails is counted, never raised
                self._record(candidate, None, 0.0)
                continue
            self._record(candidate, outputs_agree(outputs, active_outputs, _compared_output(candidate)), time.perf_counter() - t0)

    def _record(self, candidate: Any, agreed: bool | None, seconds: float) -> None:
        with self._lock:
            if candidate is not self.model:  # replaced meanwhile: the numbers belong to nobody
                return
            self.requests += 1
            if agreed is None:
                self.errors += 1
                return
            self.agreed += int(agreed)
            self.latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            if len(self.latencies) < MAX_LATENCIES:
                self.latencies.append(seconds)

    # -- reporting -------------------------------------------------------------------------------
    def collect(self) -> ShadowTelemetry | None:
        """The interval's shadow telemetry (counters start again from zero); None without a shadow."""
        with self._lock:
            if self.target is None:
                return None
            answered = self.requests - self.errors
            p50 = p99 = None
            if self.latencies:
                p50, p99 = (float(v) for v in np.percentile(self.latencies, [50, 99]))
            out = ShadowTelemetry(self.target[0], self.target[1], self.state, self.requests, self.agreed, self.errors,
                                  self.skipped, LatencyHistogram(LATENCY_BUCKETS, tuple(self.latency)),
                                  agreement=self.agreed / answered if answered else None,
                                  latency_p50_s=p50, latency_p99_s=p99)
            self._reset()
        return out

    def reported(self) -> ShadowState | None:
        if self.target is None:
            return None
        return ShadowState(self.target[0], self.target[1], self.state, clip(self.error))


def _compared_output(model: Any) -> str | None:
    pred = (model.manifest.reference or {}).get("prediction") or {}
    return pred.get("output")
