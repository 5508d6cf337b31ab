"""TFLite/LiteRT straight from a PyTorch module with litert-torch, the maintained PyTorch->LiteRT converter.

Used for PyTorch transformer graphs (encoders, ViTs), which onnx2tf cannot take (e.g. "Cannot take the
length of shape with unknown rank", tf.norm failures). The module is wrapped so the `serving_default`
signature takes and returns the schema's tensor names; shapes are those of one validation sample
(batch 1, recorded as `fixed_batch`). Precisions go through ai-edge-quantizer (the quantizer of the same
family) on the float flatbuffer: fp16 casts weights to float16; int8 is dynamic-range (per-channel int8
weights, activations quantized at run time): the transformer recipe, as for ONNX Runtime.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import numpy as np

from edgeml.errors import ConversionError, UnsupportedModelError, require

from ..options import Precision
from ..quiet import silenced

_ATEN_OP = re.compile(r"(aten\.[A-Za-z0-9_.]+)")
_FP16_RECIPE = [{
    "regex": ".*", "operation": "*", "algorithm_key": "float_casting",
    "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"}, "compute_precision": "FLOAT",
                  "explicit_dequantize": True},
}]


def available() -> bool:
    return importlib.util.find_spec("litert_torch") is not None and importlib.util.find_spec("ai_edge_quantizer") is not None


def _recipe(precision: Precision) -> Any:
    from ai_edge_quantizer import recipe

    return {Precision.FP16: lambda: _FP16_RECIPE, Precision.INT8: recipe.dynamic_wi8_afp32}[precision]()


PRECISION_DETAILS: dict[Precision, dict[str, Any]] = {
    Precision.FP32: {},
    Precision.FP16: {"weights": "float16", "io_dtype": "float32"},
    Precision.INT8: {"quantization": "dynamic_range", "recipe": "ai_edge_quantizer.dynamic_wi8_afp32",
                     "weights": "int8", "activations": "float32", "per_channel": True},
}


def _named(torch: Any, module: Any, inputs: list[str], outputs: list[str]) -> Any:
    class Named(torch.nn.Module):
        """Keyword inputs and a dict of outputs: the flatbuffer's signature carries the schema's names."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, **feeds: Any) -> dict[str, Any]:
            out = self.inner(*[feeds[n] for n in inputs])
            out = out if isinstance(out, (tuple, list)) else (out,)
            return dict(zip(outputs, out))

    named = Named()
    named.training = False  # not .eval(): an ExportedProgram's module refuses train()/eval() calls
    return named


def float_flatbuffer(ctx: Any) -> bytes:
    """The fp32 flatbuffer of the source's nn.Module (built once per conversion, cached in ctx.cache)."""
    if "litert_torch_fp32" in ctx.cache:
        return ctx.cache["litert_torch_fp32"]
    torch = require("torch", "torch", "torch (a CPU wheel; see the README)")
    with silenced():
        litert_torch = require("litert_torch", "convert", "litert-torch")
    source = ctx.source
    if not isinstance(source.native, torch.nn.Module):
        raise UnsupportedModelError("tflite through litert-torch needs the PyTorch module of the source")
    feeds = (ctx.validation or ctx.calibration).feeds
    sample = {s.name: torch.from_numpy(np.ascontiguousarray(feeds[s.name][:1])) for s in source.schema.inputs}
    wrapped = _named(torch, source.native, [s.name for s in source.schema.inputs], [o.name for o in source.schema.outputs])
    try:
        with silenced():
            # enable_x64: int64 inputs (token ids) stay int64, as the schema and the device feed them
            x64 = any(t.dtype == torch.int64 for t in sample.values())
            edge = litert_torch.convert(wrapped, (), sample_kwargs=sample, enable_x64=x64)
            flatbuffer = bytes(edge.model_content())
    except Exception as exc:
        raise _conversion_error(exc) from None
    ctx.cache["litert_torch_fp32"] = flatbuffer
    return flatbuffer


def convert(ctx: Any, precision: Precision) -> tuple[bytes, dict[str, Any]]:
    """The flatbuffer at `precision` and its details."""
    flatbuffer = float_flatbuffer(ctx)
    details = {"converter": "litert-torch" + ("" if precision == Precision.FP32 else " + ai-edge-quantizer"),
               "layout": "as source", "fixed_batch": 1, **PRECISION_DETAILS[precision]}
    if precision == Precision.FP32:
        return flatbuffer, details
    from ai_edge_quantizer import quantizer

    try:
        with silenced():
            result = quantizer.Quantizer(bytearray(flatbuffer), _recipe(precision)).quantize(enable_progress_report=False)
    except Exception as exc:
        raise ConversionError(f"ai-edge-quantizer {precision.value} failed: {_first_line(exc)}") from None
    return bytes(result.quantized_model), details


def _conversion_error(exc: Exception) -> Exception:
    text = str(exc)
    op = _ATEN_OP.search(text)
    if op and re.search(r"lowering|not supported|unsupported|no decomposition", text, re.IGNORECASE):
        return UnsupportedModelError(f"litert-torch cannot convert the operator {op.group(1)}; use --to onnx or openvino")
    return ConversionError(f"litert-torch failed: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
