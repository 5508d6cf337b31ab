"""ONNX artifacts: fp32 as exported, fp16 via onnxconverter-common, int8 via onnxruntime.quantization
(a recipe per graph family, remedies tried until the bound is met: quantize/onnx_int8.py)."""

from __future__ import annotations

from edgeml.errors import UnsupportedModelError

from ..onnx_utils import op_types, save
from ..options import Precision
from ..quantize import onnx_fp16, onnx_int8
from ..quantize.bound_check import BoundCheck
from ..sources.base import SourceModel
from .base import ExportContext, ExportedArtifact, Limit, RuleBasedExporter

# Operators whose weights have no float16/int8 kernels in ONNX Runtime (ai.onnx.ml tree ensembles, SVMs...).
_ML_ONLY = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "SVMClassifier", "SVMRegressor",
            "LinearClassifier", "LinearRegressor"}


def _needs_weight_ops(source: SourceModel, precision: Precision) -> str | None:
    ops = op_types(source.onnx_model)
    if ops & (onnx_int8.CONV_OPS | onnx_int8.DYNAMIC_OPS):
        return None
    found = ", ".join(sorted(ops & _ML_ONLY) or sorted(ops)[:6])
    return (f"{precision.value} only changes Conv, MatMul and Gemm weights and this graph has none "
            f"(it is built from {found}, float32-only kernels in ONNX Runtime); use fp32, or an MLP/neural model")


class OnnxExporter(RuleBasedExporter):
    format = "onnx"
    backend = "onnxruntime"
    description = "ONNX, run by ONNX Runtime"
    extra = "convert"
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8)
    rules = (
        Limit("Conv/MatMul/Gemm graphs only; not trees, SVMs, linear models", _needs_weight_ops,
              precisions=(Precision.FP16, Precision.INT8)),
    )

    def export(self, ctx: ExportContext, precision: Precision) -> ExportedArtifact:
        rel = f"artifacts/model.{precision.value}.onnx"
        model, details = ctx.source.onnx_model, {"opset": ctx.source.onnx_model.opset_import[0].version}
        if precision == Precision.FP16:
            model = onnx_fp16.to_fp16(model)
            details["io_dtype"] = "float32"
        elif precision == Precision.INT8:
            calib = ctx.calibration.feeds if ctx.calibration is not None else None
            judge = BoundCheck(ctx, precision) if ctx.validation is not None else None
            check = (lambda path: judge.judge(self.backend, path)) if judge is not None else None
            result = onnx_int8.quantize(model, ctx.options.quant, calib, check,
                                        rank_feeds=calib if calib is not None else (ctx.validation.feeds if ctx.validation else None))
            model = result.model
            details.update(result.details)
        elif precision != Precision.FP32:
            raise UnsupportedModelError(f"onnx has no {precision.value} export")
        save(model, ctx.bundle_root / rel)
        return ExportedArtifact(self.format, precision, self.backend, rel, rel, details)


EXPORTER = OnnxExporter()
