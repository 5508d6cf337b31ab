"""TFLite/LiteRT artifacts through the TF Lite converter, from a SavedModel of the source.

PyTorch transformer graphs (encoders, ViTs) convert straight from the nn.Module with litert-torch
(exporters/litert_torch.py). Other ONNX graphs reach TensorFlow through onnx2tf (inputs kept in the source's layout, batch axis kept
dynamic); Keras/SavedModel sources go straight from TF. fp16 stores float16 weights; int8 is
full-integer (int8 weights and activations, float32 inputs/outputs, calibrated) for convolutional
graphs and dynamic-range (int8 weights) for MatMul graphs, as for ONNX; --quantization overrides.
Every flatbuffer is run once on the LiteRT interpreter before it is kept; any crash of a converter is
an error naming the target (tflite/PRECISION), never a traceback.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from edgeml.errors import ConversionError, DataError, EdgeMLError, UnsupportedModelError

from .. import tf_graph
from . import litert_torch
from ..quiet import silenced
from ..ml_ops import onnx_only_reason
from ..onnx_utils import op_types
from ..options import Precision, QuantMode
from ..quantize.graph_family import CONV_OPS, GraphFamily, family
from ..quantize.calibration import checked_samples, one_by_one
from ..sources.base import SourceModel
from .base import ExportContext, ExportedArtifact, Limit, RuleBasedExporter

Configure = Callable[[Any, Any, ExportContext], dict[str, Any]]  # (tf, converter, ctx) -> details


def _fp32(tf: Any, converter: Any, ctx: ExportContext) -> dict[str, Any]:
    return {}


def _fp16(tf: Any, converter: Any, ctx: ExportContext) -> dict[str, Any]:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return {"weights": "float16", "io_dtype": "float32"}


def _full_integer(ctx: ExportContext) -> bool:
    """Same rule as ONNX int8: calibrated full-integer for convolutional graphs, dynamic-range (int8
    weights, float activations) for MatMul graphs, whose raw inputs often mix scales that one int8
    input quantizer cannot hold (e.g. tabular features from 0.01 to 4000); --quantization overrides."""
    mode = ctx.options.quant.mode
    if mode == QuantMode.DYNAMIC:
        return False
    if mode == QuantMode.STATIC:
        if ctx.calibration is None:
            raise DataError("tflite full-integer (static) int8 needs --calibration FILE")
        return True
    return ctx.calibration is not None and bool(op_types(ctx.source.onnx_model) & CONV_OPS)


def _int8(tf: Any, converter: Any, ctx: ExportContext) -> dict[str, Any]:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if ctx.cache.get(_FORCE_DYNAMIC) or not _full_integer(ctx):
        return {"quantization": "dynamic_range", "weights": "int8", "activations": "float32"}
    ctx.cache[_FULL_INTEGER_TRIED] = True
    n = checked_samples(ctx.calibration.feeds, "tflite full-integer int8")
    samples = one_by_one(ctx.calibration.feeds)
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return {"quantization": "full_integer", "weights": "int8", "activations": "int8", "io_dtype": "float32",
            "calibration_samples": n}


PRECISIONS: dict[Precision, Configure] = {Precision.FP32: _fp32, Precision.FP16: _fp16, Precision.INT8: _int8}


def _onnx2tf_covers(source: SourceModel, precision: Precision) -> str | None:
    if converter_for(source) != "onnx2tf":
        return None
    bad = tf_graph.onnx2tf_unsupported(source.onnx_model)
    return onnx_only_reason("tflite", bad) if bad else None


class TFLiteExporter(RuleBasedExporter):
    format = "tflite"
    backend = "litert"
    description = "TFLite flatbuffer, run by the LiteRT interpreter (ai-edge-litert)"
    extra = "convert"
    precisions = tuple(PRECISIONS)
    rules = (
        # TensorFlow-native sources convert straight from TF; every other kind goes through onnx2tf.
        Limit("operators onnx2tf converts; not ai.onnx.ml (trees, SVMs, linear models)", _onnx2tf_covers,
              skip_kinds=(*tf_graph.TF_NATIVE_KINDS, "pytorch")),
        # PyTorch transformer graphs convert from the nn.Module with litert-torch, the rest through onnx2tf.
        Limit("transformer graphs through litert-torch; other graphs: operators onnx2tf converts", _onnx2tf_covers,
              kinds=("pytorch",)),
    )

    def export(self, ctx: ExportContext, precision: Precision) -> ExportedArtifact:
        rel = f"artifacts/model.{precision.value}.tflite"
        ctx.cache.pop(_FULL_INTEGER_TRIED, None)
        try:
            details = _build(ctx, precision, ctx.bundle_root / rel)
        except ConversionError as exc:
            # Full-integer int8 the interpreter cannot prepare (XNNPACK "failed to prepare" on ResNet-18):
            # the documented alternative is dynamic-range int8 (int8 weights, float activations).
            tried = ctx.cache.pop(_FULL_INTEGER_TRIED, False)
            if precision != Precision.INT8 or not tried or ctx.options.quant.mode != QuantMode.AUTO:
                raise
            ctx.cache[_FORCE_DYNAMIC] = True
            try:
                details = _build(ctx, precision, ctx.bundle_root / rel)
            finally:
                ctx.cache.pop(_FORCE_DYNAMIC, None)
            details["attempts"] = [{"recipe": "full_integer", "passed": False, "result": exc.message},
                                   {"recipe": "dynamic_range", "passed": True, "result": "runs on the LiteRT interpreter"}]
        return ExportedArtifact(self.format, precision, self.backend, rel, rel, details)


_FULL_INTEGER_TRIED = "tflite_full_integer_tried"
_FORCE_DYNAMIC = "tflite_force_dynamic"


def _build(ctx: ExportContext, precision: Precision, path: Any) -> dict[str, Any]:
    """Convert, write and smoke-run one flatbuffer; its details."""
    name = converter_for(ctx.source)
    try:
        flatbuffer, details = CONVERTERS[name](ctx, precision)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(flatbuffer)
        _smoke_run(path, ctx, details)
    except EdgeMLError:
        raise
    except Exception as exc:  # a converter crash names the target, never a traceback
        raise ConversionError(f"the {name} converter crashed at tflite/{precision.value}: {_first_line(exc)}") from None
    return details


def _from_tensorflow(ctx: ExportContext, precision: Precision) -> tuple[bytes, dict[str, Any]]:
    """onnx2tf (ONNX graphs) or TF itself (Keras), then the TFLite converter."""
    tf = tf_graph.quiet_tensorflow()
    converter = tf_graph.tflite_converter(ctx.source, ctx.scratch, ctx.cache)
    details = {"converter": "onnx2tf + TFLiteConverter" if ctx.source.kind not in tf_graph.TF_NATIVE_KINDS
               else "TFLiteConverter", "layout": "as source"}
    details.update(PRECISIONS[precision](tf, converter, ctx))
    try:
        with silenced():
            flatbuffer = converter.convert()
    except Exception as exc:
        raise _conversion_error(exc, precision) from None
    details.update(_batch_details(ctx.source))
    return flatbuffer, details


def _from_pytorch(ctx: ExportContext, precision: Precision) -> tuple[bytes, dict[str, Any]]:
    return litert_torch.convert(ctx, precision)


# Which converter makes the flatbuffer: litert-torch for PyTorch transformer graphs (onnx2tf cannot take
# them), the TensorFlow route (onnx2tf / Keras) for everything else.
CONVERTERS: dict[str, Callable[[ExportContext, Precision], tuple[bytes, dict[str, Any]]]] = {
    "litert-torch": _from_pytorch,
    "onnx2tf": _from_tensorflow,
}


def converter_for(source: SourceModel) -> str:
    if (source.kind == "pytorch" and source.native is not None and litert_torch.available()
            and family(source.onnx_model) == GraphFamily.TRANSFORMER):
        return "litert-torch"
    return "onnx2tf"


def _smoke_run(path: Any, ctx: ExportContext, details: dict[str, Any]) -> None:
    """Load and run the flatbuffer on the LiteRT interpreter: XNNPACK's "failed to prepare" and similar
    runtime refusals surface here as this target's error, not later as a traceback. A batch axis the
    converter fixed although the source's is dynamic (onnx2tf bakes Reshape targets such as [1, 512])
    is found by running two samples, and recorded as `fixed_batch: 1` so devices feed one at a time."""
    from edgeml.runtime.backends import BackendOptions, get_backend

    data = ctx.validation or ctx.calibration
    if data is None:
        return
    try:
        session = get_backend("litert").load(path, BackendOptions(threads=1))
        if not details.get("fixed_batch") and _batch_is_fixed(session, data.feeds):
            details.pop("dynamic_batch", None)
            details.update(fixed_batch=1, batch_note="the converted graph fixes the batch axis at 1")
        batch = details.get("fixed_batch") or 1
        session.run({k: np.repeat(v[:1], batch, axis=0) for k, v in data.feeds.items()})
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ConversionError(f"the LiteRT interpreter cannot run the converted model: {_first_line(exc)}") from None


def _batch_is_fixed(session: Any, feeds: dict[str, np.ndarray]) -> bool:
    """True when two samples in do not give two samples out."""
    pair = {k: np.repeat(v[:1], 2, axis=0) for k, v in feeds.items()}
    try:
        outputs = session.run(pair)
    except Exception:
        return True
    return any(np.ndim(o) and np.shape(o)[0] != 2 for o in outputs.values())


def _batch_details(source: SourceModel) -> dict[str, Any]:
    fixed = {s.shape[0] for s in source.schema.inputs if s.shape and s.shape[0] is not None}
    return {"fixed_batch": min(fixed)} if fixed else {"dynamic_batch": True}


def _conversion_error(exc: Exception, precision: Precision) -> Exception:
    text = str(exc)
    for line in text.splitlines():
        if "not supported" in line.lower() or "failed to legalize" in line.lower():
            op = line.strip()[:200]
            if precision == Precision.INT8:
                return UnsupportedModelError(f"tflite full-integer int8 cannot express an operator ({op}); "
                                             "drop --calibration for dynamic-range int8, or use --to onnx/openvino")
            return UnsupportedModelError(f"tflite cannot express an operator of this model ({op})")
    first = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
    return ConversionError(f"the TFLite converter failed at {precision.value}: {first}")


EXPORTER = TFLiteExporter()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
