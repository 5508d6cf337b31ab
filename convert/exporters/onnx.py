"""ONNX artifacts: fp32 as exported, fp16 via onnxconverter-common, int8 via onnxruntime.quantization."""

from __future__ import annotations

from edgeml.errors import UnsupportedModelError

from ..onnx_utils import op_types, save
from ..options import Precision
from ..quantize import onnx_fp16, onnx_int8
from ..sources.base import SourceModel
from .base import ExportContext, ExportedArtifact

# Operators whose weights have no float16/int8 kernels in ONNX Runtime (ai.onnx.ml tree ensembles, SVMs...).
_ML_ONLY = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "SVMClassifier", "SVMRegressor",
            "LinearClassifier", "LinearRegressor"}


class OnnxExporter:
    format = "onnx"
    backend = "onnxruntime"
    description = "ONNX, run by ONNX Runtime"
    extra = "convert"

    def support(self, source_kind: str, precision: Precision) -> str | None:
        return None

    def check(self, source: SourceModel, precision: Precision) -> str | None:
        if precision == Precision.FP32:
            return None
        ops = op_types(source.onnx_model)
        if not ops & (onnx_int8.CONV_OPS | onnx_int8.DYNAMIC_OPS):
            found = ", ".join(sorted(ops & _ML_ONLY) or sorted(ops)[:6])
            return (f"{precision.value} only changes Conv, MatMul and Gemm weights and this graph has none "
                    f"(it is built from {found}, float32-only kernels in ONNX Runtime); use fp32, or an MLP/neural model")
        return None

    def export(self, ctx: ExportContext, precision: Precision) -> ExportedArtifact:
        rel = f"artifacts/model.{precision.value}.onnx"
        model, details = ctx.source.onnx_model, {"opset": ctx.source.onnx_model.opset_import[0].version}
        if precision == Precision.FP16:
            model = onnx_fp16.to_fp16(model)
            details["io_dtype"] = "float32"
        elif precision == Precision.INT8:
            calib = ctx.calibration.feeds if ctx.calibration is not None else None
            result = onnx_int8.quantize(model, ctx.options.quant, calib)
            model = result.model
            details.update(result.details)
        elif precision != Precision.FP32:
            raise UnsupportedModelError(f"onnx has no {precision.value} export")
        save(model, ctx.bundle_root / rel)
        return ExportedArtifact(self.format, precision, self.backend, rel, rel, details)


EXPORTER = OnnxExporter()
