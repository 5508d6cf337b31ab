"""The backend protocol: one small module per inference engine, registered by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class BackendOptions:
    threads: int | None = None  # intra-op threads; None = the engine's default
    precision: str = "fp32"  # the artifact's precision (OpenVINO sets its inference hint from it)


class Session(Protocol):
    """A loaded artifact, ready to run."""

    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference; feeds are already checked and cast to the schema's dtypes."""
        ...


class Backend(Protocol):
    name: str
    formats: tuple[str, ...]  # artifact formats this backend runs

    def available(self) -> bool:
        """True when the engine can be imported on this machine."""
        ...

    def load(self, path: Path, options: BackendOptions) -> Session:
        ...
