"""OpenVINO IR artifacts: converted from the ONNX graph with openvino.convert_model.

fp32 as converted; fp16 with weights compressed to float16; int8 with NNCF (quantize/nncf_int8.py):
post-training quantization on --calibration data with the graph family's recipe (transformers with
ModelType.TRANSFORMER), NNCF's remedies tried until the bound is met, accuracy-controlled on labels with
`--max-accuracy-drop`, and int8 weight compression when there is no calibration data.
"""

from __future__ import annotations

import re
from typing import Any

from edgeml.errors import ConversionError, UnsupportedModelError, require

from ..ml_ops import onnx_only_reason, portable, remaining_ml_ops
from ..onnx_utils import save
from ..options import Precision
from ..quantize import nncf_int8
from ..quantize.bound_check import BoundCheck, Verdict
from ..quantize.graph_family import family
from ..sources.base import SourceModel
from .base import ExportContext, ExportedArtifact, Limit, RuleBasedExporter

MODEL_FILE = "model.xml"
_UNSUPPORTED_OPS = re.compile(r"(?:conversion rule|not supported|OpConversionFailure)[^:]*:\s*(.+)", re.IGNORECASE)


def _no_ml_operators(source: SourceModel, precision: Precision) -> str | None:
    ml = remaining_ml_ops(portable(source.onnx_model))
    return onnx_only_reason("openvino", ml) if ml else None


class OpenVINOExporter(RuleBasedExporter):
    format = "openvino"
    backend = "openvino"
    description = "OpenVINO IR (model.xml + model.bin), run by OpenVINO Runtime"
    extra = "convert"
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8)
    # Only scikit-learn and ONNX files carry ai.onnx.ml operators (PyTorch and Keras export standard ONNX).
    rules = (
        Limit("standard ONNX operators; not ai.onnx.ml (trees, SVMs, linear models)", _no_ml_operators,
              kinds=("sklearn", "onnx", "booster")),
    )

    def export(self, ctx: ExportContext, precision: Precision) -> ExportedArtifact:
        ov = require("openvino", "openvino")
        details = {"converter": "openvino.convert_model (from ONNX)"}
        if precision == Precision.INT8:
            model, quant = _int8(ov, ctx)
            details.update(quant)
        else:
            model = _converted(ov, ctx)
        if precision == Precision.FP16:
            details.update(weights="float16", inference_precision="f16")
        rel_dir = f"artifacts/model.{precision.value}.openvino"
        out = ctx.bundle_root / rel_dir
        out.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(out / MODEL_FILE), compress_to_fp16=(precision == Precision.FP16))
        details.update(_batch_details(ctx.source))
        return ExportedArtifact(self.format, precision, self.backend, rel_dir, rel_dir, details)


def _converted(ov: Any, ctx: ExportContext) -> Any:
    """A fresh ov.Model per precision (NNCF and compression modify the model they are given)."""
    onnx_path = ctx.cache.get("openvino_onnx") or save(portable(ctx.source.onnx_model), ctx.scratch / "openvino_source.onnx")
    ctx.cache["openvino_onnx"] = onnx_path
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        text = str(exc)
        found = _UNSUPPORTED_OPS.search(text)
        if found:
            raise UnsupportedModelError(f"openvino cannot express the operator(s) {found.group(1).strip()[:200]}; use --to onnx") from None
        raise ConversionError(f"openvino.convert_model failed: {text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__}") from None
    _pin_names(model, ctx.source)
    return model


def _pin_names(model: Any, source: SourceModel) -> None:
    """Give each input/output exactly the schema's tensor name: OpenVINO can attach extra aliases
    (e.g. `cast_input` after folding a Cast), and `get_any_name()` may then return the alias."""
    for ports, specs in ((model.inputs, source.schema.inputs), (model.outputs, source.schema.outputs)):
        for port, spec in zip(ports, specs):
            if spec.name in port.get_names():
                port.get_tensor().set_names({spec.name})


def _int8(ov: Any, ctx: ExportContext) -> tuple[Any, dict[str, Any]]:
    """NNCF int8 with the graph family's recipe and remedies (quantize/nncf_int8.py), judged by the bound."""
    fam = family(ctx.source.onnx_model)
    check = None
    if ctx.validation is not None and ctx.calibration is not None:
        judge = BoundCheck(ctx, Precision.INT8)
        counter = iter(range(1_000_000))

        def check(model: Any) -> Verdict:
            out = ctx.scratch / f"openvino_int8_candidate_{next(counter)}"
            out.mkdir(parents=True, exist_ok=True)
            ov.save_model(model, str(out / MODEL_FILE), compress_to_fp16=False)
            return judge.judge("openvino", out)

    return nncf_int8.quantize(lambda: _converted(ov, ctx), ctx, fam, check)


def _batch_details(source: SourceModel) -> dict[str, Any]:
    fixed = {s.shape[0] for s in source.schema.inputs if s.shape and s.shape[0] is not None}
    return {"fixed_batch": min(fixed)} if fixed else {"dynamic_batch": True}


EXPORTER = OpenVINOExporter()
