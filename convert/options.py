"""Typed options for `edgeml convert`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from edgeml.compare import Tolerance
from edgeml.schema import TensorSpec


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class QuantMode(str, Enum):
    AUTO = "auto"  # static for convolutional graphs, dynamic for MatMul/Gemm graphs
    STATIC = "static"  # calibrated activations (QDQ), needs --calibration
    DYNAMIC = "dynamic"  # int8 weights, activations quantized at run time


class CalibrationMethod(str, Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Task(str, Enum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    CLUSTERING = "clustering"
    OTHER = "other"


DEFAULT_TOLERANCES: dict[Precision, Tolerance] = {
    Precision.FP32: Tolerance(atol=1e-4, rtol=1e-3, min_agreement=0.99, max_metric_drop=0.005),
    Precision.FP16: Tolerance(atol=1e-3, rtol=2e-2, min_agreement=0.98, max_metric_drop=0.01),
    Precision.INT8: Tolerance(atol=None, rtol=0.0, min_agreement=0.95, max_metric_drop=0.02),
}


@dataclass(frozen=True)
class ToleranceOverride:
    atol: float | None = None
    rtol: float | None = None
    min_agreement: float | None = None
    max_metric_drop: float | None = None

    def apply(self, base: Tolerance) -> Tolerance:
        return Tolerance(
            atol=self.atol if self.atol is not None else base.atol,
            rtol=self.rtol if self.rtol is not None else base.rtol,
            min_agreement=self.min_agreement if self.min_agreement is not None else base.min_agreement,
            max_metric_drop=self.max_metric_drop if self.max_metric_drop is not None else base.max_metric_drop,
        )


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
    allow_degraded: bool = False
    force: bool = False
    opset: int = 17
    latency_runs: int = 50
    max_accuracy_drop: float | None = None  # OpenVINO int8: NNCF accuracy-controlled quantization (needs labels)

    def tolerance_for(self, precision: Precision) -> Tolerance:
        return self.tolerance.apply(DEFAULT_TOLERANCES[precision])
