"""OpenVINO IR artifacts: converted from the ONNX graph with openvino.convert_model.

fp32 as converted; fp16 with weights compressed to float16; int8 with NNCF: post-training quantization
on --calibration data, accuracy-controlled (`--max-accuracy-drop`) when the validation data has labels,
and int8 weight compression when there is no calibration data.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from edgeml.errors import ConversionError, DataError, UnsupportedModelError, UsageError, require

from ..ml_ops import onnx_only_reason, portable, remaining_ml_ops
from ..onnx_utils import save
from ..options import Precision
from ..quiet import silenced
from ..quantize.calibration import checked_samples, one_by_one
from ..sources.base import SourceModel
from ..validate import TaskInfo, predictions
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
              kinds=("sklearn", "onnx")),
    )

    def export(self, ctx: ExportContext, precision: Precision) -> ExportedArtifact:
        ov = require("openvino", "openvino")
        model, details = _converted(ov, ctx), {"converter": "openvino.convert_model (from ONNX)"}
        if precision == Precision.INT8:
            model, quant = _int8(ov, model, ctx)
            details.update(quant)
        elif precision == Precision.FP16:
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


def _int8(ov: Any, model: Any, ctx: ExportContext) -> tuple[Any, dict[str, Any]]:
    with silenced():  # nncf imports the frameworks it finds (tensorflow prints from C++ at import)
        nncf = require("nncf", "convert")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    drop = ctx.options.max_accuracy_drop
    if ctx.calibration is None:
        if drop is not None:
            raise DataError("--max-accuracy-drop needs --calibration data for NNCF quantization")
        with silenced():
            return nncf.compress_weights(model), {"quantization": "weights_only", "weights": "int8", "activations": "float32",
                                                  "note": "pass --calibration for full int8 (NNCF post-training quantization)"}
    n = checked_samples(ctx.calibration.feeds, "openvino int8 (NNCF post-training quantization)")
    calibration = nncf.Dataset(one_by_one(ctx.calibration.feeds))
    details: dict[str, Any] = {"quantization": "nncf_ptq", "weights": "int8", "activations": "int8", "calibration_samples": n}
    try:
        with silenced():
            if drop is None:
                return nncf.quantize(model, calibration, subset_size=min(n, 300)), details
            validation = _labelled_validation(ctx)
            quantized = nncf.quantize_with_accuracy_control(
                model, calibration, nncf.Dataset(validation), validation_fn=_accuracy_fn(ctx.source),
                max_drop=drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=min(n, 300),
            )
            details.update(quantization="nncf_accuracy_control", max_accuracy_drop=drop)
            return quantized, details
    except (DataError, UsageError):
        raise
    except Exception as exc:
        raise ConversionError(f"NNCF int8 quantization failed: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__}") from None


def _labelled_validation(ctx: ExportContext) -> list[tuple[dict[str, np.ndarray], Any]]:
    data = ctx.validation
    if data is None or data.labels is None:
        raise DataError("--max-accuracy-drop needs labels in the validation data (a label/target key or column, or --target)")
    if ctx.source.score_output is None and ctx.source.label_output is None:
        raise UsageError("--max-accuracy-drop needs a classifier (the model's task is not classification)")
    return list(zip(one_by_one(data.feeds), data.labels))


def _accuracy_fn(source: SourceModel):
    info = TaskInfo(source.task, source.label_output, source.score_output, source.labels)

    def accuracy(compiled: Any, items: Any) -> float:
        hits, total = 0, 0
        for feeds, label in items:
            result = compiled(feeds)
            outputs = {p.get_any_name(): result[p] for p in compiled.outputs}
            pred = predictions(outputs, info)
            if pred is None:
                continue
            value = pred[0]
            if info.labels and np.asarray(label).dtype.kind in "OUS" and np.asarray(value).dtype.kind in "iu":
                value = info.labels[int(value)]
            hits += int(str(value) == str(np.asarray(label).reshape(-1)[0] if np.ndim(label) else label))
            total += 1
        return hits / max(total, 1)

    return accuracy


def _batch_details(source: SourceModel) -> dict[str, Any]:
    fixed = {s.shape[0] for s in source.schema.inputs if s.shape and s.shape[0] is not None}
    return {"fixed_batch": min(fixed)} if fixed else {"dynamic_batch": True}


EXPORTER = OpenVINOExporter()
