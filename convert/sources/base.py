"""What every source loader produces: an ONNX graph, its schema and the source model as reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from edgeml.schema import Schema

from ..options import ConvertOptions, Task

Feeds = dict[str, np.ndarray]
ReferenceFn = Callable[[Feeds], Feeds]  # source model outputs, keyed by the ONNX output names


@dataclass
class SourceModel:
    kind: str  # registry name of the loader: "pytorch", "sklearn", "onnx", ...
    framework: str
    framework_version: str
    path: Path | None
    sha256: str | None
    onnx_model: Any  # onnx.ModelProto, fp32
    schema: Schema
    task: Task
    reference: ReferenceFn
    labels: list[Any] | None = None
    label_output: str | None = None  # output holding predicted labels (sklearn "label")
    score_output: str | None = None  # output whose argmax is the prediction (logits/probabilities)
    comparable_outputs: list[str] | None = None  # outputs the reference produces (None = all)
    details: dict[str, Any] = field(default_factory=dict)  # estimator class, export settings, ...
    native: Any = None  # the loaded framework object, for exporters that convert straight from it
    # Set by sources that come with data (`edgeml train` runs): used when the options give none.
    default_calibration: Path | None = None
    default_validation: Path | None = None
    default_target: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # training metrics for manifest.metrics
    lineage: dict[str, Any] | None = None  # manifest.lineage (set by the mlflow source)

    def source_info(self) -> dict[str, Any]:
        info = {"kind": self.kind, "framework": self.framework, "framework_version": self.framework_version}
        if self.path is not None:
            info["file"] = self.path.name
        if self.sha256:
            info["sha256"] = self.sha256
        info.update(self.details)
        return info


class SourceLoader(Protocol):
    name: str
    description: str

    def matches(self, source: str) -> bool:
        """True when this loader handles the SOURCE argument (by suffix, content or syntax)."""
        ...

    def load(self, source: str, options: ConvertOptions) -> SourceModel:
        ...
