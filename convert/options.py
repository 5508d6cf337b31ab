"""Typed options for `edgeml convert`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from edgeml.compare import Tolerance
from edgeml.schema import TensorSpec
from edgeml.task_metrics import AUTO_LAYOUT

from .bounds import default_bound
from .kinds import Precision, Task

__all__ = ["CalibrationMethod", "ConvertOptions", "DEFAULT_TOLERANCES", "Precision", "QuantMode", "QuantOptions", "Task",
           "ToleranceOverride"]


# The `other` task's row of convert/bounds.py per precision (what every task gets at least).
DEFAULT_TOLERANCES = {p: default_bound(Task.OTHER, p) for p in Precision}


class QuantMode(str, Enum):
    AUTO = "auto"  # static for convolutional graphs, dynamic for MatMul/Gemm graphs
    STATIC = "static"  # calibrated activations (QDQ), needs --calibration
    DYNAMIC = "dynamic"  # int8 weights, activations quantized at run time


class CalibrationMethod(str, Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


@dataclass(frozen=True)
class ToleranceOverride:
    atol: float | None = None
    rtol: float | None = None
    min_agreement: float | None = None
    max_metric_drop: float | None = None

    max_rel_error: float | None = None
    min_cosine: float | None = None  # the mean cosine bound (embeddings)
    min_box_iou: float | None = None

    def apply(self, base: Tolerance) -> Tolerance:
        given = {"atol": self.atol, "rtol": self.rtol, "min_agreement": self.min_agreement,
                 "max_metric_drop": self.max_metric_drop, "max_rel_error": self.max_rel_error,
                 "min_cosine_mean": self.min_cosine, "min_box_iou": self.min_box_iou}
        return replace(base, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class QuantOptions:
    mode: QuantMode = QuantMode.AUTO
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    per_channel: bool = True


@dataclass
class ConvertOptions:
    source: str
    out: Path
    name: str
    version: str
    formats: list[str] = field(default_factory=lambda: ["onnx"])
    precisions: list[Precision] = field(default_factory=lambda: [Precision.FP32])
    calibration: Path | None = None
    validation: Path | None = None
    sign_key: Path | None = None
    inputs: list[TensorSpec] = field(default_factory=list)  # --input overrides
    weights: Path | None = None  # for module:factory PyTorch sources
    task: Task | None = None  # None = infer from the source
    labels: list[str] | None = None
    target: str | None = None  # label column/key in calibration and validation files
    quant: QuantOptions = field(default_factory=QuantOptions)
    tolerance: ToleranceOverride = field(default_factory=ToleranceOverride)
    allow_degraded: bool = False  # keep failing artifacts in the bundle, marked failed (never selected)
    strict: bool = False  # all-or-nothing: any failing target writes nothing
    detection_layout: str = AUTO_LAYOUT  # detection outputs: channels-first [b, 4+C, N] or channels-last [b, N, 4+C]
    force: bool = False
    opset: int = 17
    latency_runs: int = 50
    max_accuracy_drop: float | None = None  # OpenVINO int8: NNCF accuracy-controlled quantization (needs labels)
    tokenizer: Path | None = None  # text models: a tokenizers JSON to ship in the bundle (convert/text.py)

    def tolerance_for(self, precision: Precision, task: Task = Task.OTHER) -> Tolerance:
        """The task's default bound at this precision (convert/bounds.py), with the command line's overrides."""
        return self.tolerance.apply(default_bound(task, precision))

