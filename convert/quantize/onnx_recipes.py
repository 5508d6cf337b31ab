"""The int8 recipes of onnxruntime.quantization, by name, and which ones each graph family tries.

Following ONNX Runtime's quantization guide: dynamic quantization for transformer (attention) and
MatMul graphs, static QDQ with per-channel weights for CNNs, the calibration method tried when MinMax
ranges lose accuracy (Entropy, Percentile), `nodes_to_exclude` for the most sensitive layers, and
16-bit activations with 8-bit weights (A16W8 mixed precision) as the last remedy. For attention
graphs the static alternative quantizes only the MatMul/Gemm inputs (Softmax, LayerNorm and residual
Adds stay float), the transformer-safe QDQ setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..options import CalibrationMethod, QuantMode
from .graph_family import GraphFamily

# 7-bit weights. x86 CPUs without VNNI (AVX2-only, e.g. many AMD EPYC and older Intel parts) multiply
# uint8 x int8 pairs into saturating int16 (VPMADDUBSW); full-range weights overflow there and a tiny MLP's
# scores drift by 0.19 instead of 0.015. The artifact must hold on whatever CPU the device has, so the
# portable range is the default (onnxruntime.quantization's documented remedy); the cost on VNNI/Arm is
# one bit of weight resolution.
REDUCE_RANGE = True
TRANSFORMER_SAFE_OPS = ("MatMul", "Gemm")  # transformer-safe QDQ: Softmax, LayerNorm, Add stay float


@dataclass(frozen=True)
class Recipe:
    name: str
    mode: QuantMode
    calibration: CalibrationMethod | None = None  # static only
    per_channel: bool = True
    op_types: tuple[str, ...] | None = None  # None: every operator ORT quantizes
    activations16: bool = False  # A16W8 mixed precision
    exclude: tuple[str, ...] = field(default=(), compare=False)  # node names kept float

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recipe": self.name, "quantization": self.mode.value, "per_channel": self.per_channel,
                               "reduce_range": REDUCE_RANGE}
        if self.mode == QuantMode.STATIC:
            out.update(calibration_method=self.calibration.value, format="QDQ", weights="int8",
                       activations="uint16" if self.activations16 else "uint8")
        if self.op_types:
            out["quantized_ops"] = list(self.op_types)
        if self.exclude:
            out["nodes_excluded"] = list(self.exclude)
        return out

    def excluding(self, nodes: list[str]) -> "Recipe":
        return replace(self, name=f"{self.name}+exclude_{len(nodes)}_sensitive", exclude=tuple(nodes))


RECIPES: dict[str, Recipe] = {
    "dynamic": Recipe("dynamic", QuantMode.DYNAMIC),
    "qdq_minmax": Recipe("qdq_minmax", QuantMode.STATIC, CalibrationMethod.MINMAX),
    "qdq_entropy": Recipe("qdq_entropy", QuantMode.STATIC, CalibrationMethod.ENTROPY),
    "qdq_percentile": Recipe("qdq_percentile", QuantMode.STATIC, CalibrationMethod.PERCENTILE),
    "qdq_transformer_safe": Recipe("qdq_transformer_safe", QuantMode.STATIC, CalibrationMethod.MINMAX,
                                   op_types=TRANSFORMER_SAFE_OPS),
    "qdq_a16w8": Recipe("qdq_a16w8", QuantMode.STATIC, CalibrationMethod.MINMAX, activations16=True),
}

# The first recipe is what a graph of the family gets; the others are tried in order when it misses its
# bound. "exclude" stands for the best attempt so far with its most sensitive nodes kept float.
PLANS: dict[GraphFamily, tuple[str, ...]] = {
    GraphFamily.TRANSFORMER: ("dynamic", "exclude", "qdq_transformer_safe"),
    GraphFamily.CNN: ("qdq_minmax", "qdq_percentile", "qdq_entropy", "exclude", "qdq_a16w8"),
    GraphFamily.MLP: ("dynamic", "exclude", "qdq_minmax"),
}
STATIC_FIRST_METHOD = {m: f"qdq_{m.value}" for m in CalibrationMethod}


def plan(fam: GraphFamily, requested: QuantMode, method: CalibrationMethod) -> list[str]:
    """The recipe names to try, honouring --quantization and putting --calibration-method first among CNN
    calibrations."""
    names = list(PLANS[fam])
    if fam == GraphFamily.CNN and method != CalibrationMethod.MINMAX:
        first = STATIC_FIRST_METHOD[method]
        names.remove(first)
        names.insert(0, first)
    if requested != QuantMode.AUTO:
        names = [n for n in names if n == "exclude" or RECIPES[n].mode == requested]
        if not names or names[0] == "exclude":
            names.insert(0, "dynamic" if requested == QuantMode.DYNAMIC else STATIC_FIRST_METHOD[method])
    return names


class _Reader:
    """onnxruntime's CalibrationDataReader: one sample dict per get_next() call."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        n = len(next(iter(feeds.values())))
        self._batches = iter([{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def apply(recipe: Recipe, src: Path, out: Path, calibration: dict[str, np.ndarray] | None) -> None:
    """Quantize the ONNX file `src` into `out` with `recipe` (onnxruntime.quantization)."""
    from onnxruntime import quantization as q

    exclude = list(recipe.exclude)
    if recipe.mode == QuantMode.DYNAMIC:
        q.quantize_dynamic(str(src), str(out), weight_type=q.QuantType.QInt8, per_channel=recipe.per_channel,
                           reduce_range=REDUCE_RANGE, nodes_to_exclude=exclude)
        return
    method = {
        CalibrationMethod.MINMAX: q.CalibrationMethod.MinMax,
        CalibrationMethod.ENTROPY: q.CalibrationMethod.Entropy,
        CalibrationMethod.PERCENTILE: q.CalibrationMethod.Percentile,
    }[recipe.calibration]
    extra: dict[str, Any] = {}
    if recipe.activations16:
        extra["UseQDQContribOps"] = True  # 16-bit Q/DQ below opset 21
    q.quantize_static(
        str(src), str(out), _Reader(calibration), quant_format=q.QuantFormat.QDQ, per_channel=recipe.per_channel,
        activation_type=q.QuantType.QUInt16 if recipe.activations16 else q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8, calibrate_method=method, reduce_range=REDUCE_RANGE,
        nodes_to_exclude=exclude, op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
        extra_options=extra,
    )
