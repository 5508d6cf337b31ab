"""Simulated devices: N real device agents in one process, each with its own store, MQTT session and
model holder, serving a synthetic load drawn from the installed bundle's golden samples, or from a
fixed traffic file (real inputs, independent of the installed version: a version that cannot serve them
errors, as it would in the field).

Used by `edgeml fleet simulate`, the demo, tests and the convergence benchmark.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeml.manifest import SAMPLES_NAME
from edgeml.samples import load_npz, read_samples, sample_inputs

from ..server.holder import ModelHolder
from ..selection import Preference
from .agent import AgentConfig, DeviceAgent


@dataclass
class SimulationConfig:
    devices: int
    broker_url: str
    store_root: Path
    bundle_key: Any = None
    fleet_key: Any = None
    tags: dict[str, str] = field(default_factory=dict)
    id_prefix: str = "sim"
    requests_per_second: float = 5.0  # per device
    telemetry_interval: float = 5.0
    error_rate: float = 0.0  # fraction of synthetic requests counted as errors (fault injection)
    traffic: dict[str, np.ndarray] | None = None  # inputs by name; None: the active bundle's golden samples
    backends: list[str] | None = None  # device i has only backends[i] (a mixed fleet): it installs that format
    broker_login: Callable[[str], str] | None = None  # device id -> broker URL with its credentials (None: broker_url)


class Simulation:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.agents: list[DeviceAgent] = []
        self._stop = threading.Event()
        self._load: threading.Thread | None = None
        self._samples: dict[int, dict[str, np.ndarray]] = {}

    def start(self) -> "Simulation":
        c = self.config
        width = max(3, len(str(c.devices)))
        for i in range(c.devices):
            device_id = f"{c.id_prefix}-{i:0{width}d}"
            tags = {**c.tags, "sim_index": str(i)}
            preference = Preference.resolve(c.backends[i]) if c.backends else Preference.resolve()
            url = c.broker_login(device_id) if c.broker_login else c.broker_url
            agent_config = AgentConfig(url, device_id, c.store_root / device_id, tags, c.bundle_key, c.fleet_key,
                                       c.telemetry_interval, preference=preference, threads=1)
            self.agents.append(DeviceAgent(agent_config, ModelHolder()).start())
        self._load = threading.Thread(target=self._traffic, name="sim-traffic", daemon=True)
        self._load.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._load:
            self._load.join(5)
        for agent in self.agents:
            agent.stop()

    def versions(self) -> dict[str, str | None]:
        return {a.config.device_id: (a.holder.model.info.version if a.holder.model else None) for a in self.agents}

    def _traffic(self) -> None:
        """Round-robin synthetic requests over the devices at the configured per-device rate."""
        rate = self.config.requests_per_second * max(1, len(self.agents))
        rng = np.random.default_rng(0)
        period = 1.0 / rate if rate > 0 else 1.0
        for agent in itertools.cycle(self.agents):
            if self._stop.wait(period):
                return
            model = agent.holder.model
            if model is None:
                continue
            raw = self._traffic_row(rng)
            feeds = self._sample_for(model, rng) if raw is None else None
            if raw is None and feeds is None:
                continue
            t0 = time.perf_counter()
            try:
                if self.config.error_rate and rng.random() < self.config.error_rate:
                    raise RuntimeError("injected fault")
                if raw is not None:
                    feeds = model.prepare(raw)  # real traffic: a version with another input schema fails here
                outputs = model.run(feeds)
            except Exception:
                agent.recorder.error(model)
                continue
            agent.recorder.observe(model, feeds, outputs, time.perf_counter() - t0)

    def _traffic_row(self, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        traffic = self.config.traffic
        if not traffic:
            return None
        i = int(rng.integers(len(next(iter(traffic.values())))))
        return {k: v[i:i + 1] for k, v in traffic.items()}

    def _sample_for(self, model: Any, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        key = id(model)
        if key not in self._samples:
            path = Path(model.bundle) / SAMPLES_NAME
            if not path.is_file():
                return None
            self._samples[key] = model.prepare(read_samples(path)[0])
        feeds = self._samples[key]
        n = len(next(iter(feeds.values())))
        i = int(rng.integers(n))
        return {k: v[i:i + 1] for k, v in feeds.items()}


def load_traffic(path: Path) -> dict[str, np.ndarray]:
    """Inputs of a traffic file: every array of the .npz, keyed by input name, rows along the first axis."""
    from edgeml.errors import UsageError

    try:
        arrays = sample_inputs(load_npz(path))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--traffic {path}: not a readable .npz file ({exc})") from None
    if not arrays or len({len(a) for a in arrays.values()}) != 1 or any(a.ndim == 0 for a in arrays.values()):
        raise UsageError(f"--traffic {path}: needs arrays keyed by input name with the same number of rows")
    return arrays
