"""The TensorFlow form of a source, the starting point of every TFLite/LiteRT conversion.

Its `serving_default` signature takes and returns tensors named exactly like the ONNX schema, in the
source's layout (NCHW stays NCHW), so a device feeds a `.tflite` artifact what it feeds the `.onnx`
one. ONNX graphs go through onnx2tf; TensorFlow/Keras sources convert straight from TF (their `native`
object is a tf.Module whose `serve` function takes and returns the schema's named tensors).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from edgeml.errors import ConversionError, UnsupportedModelError, require

from .ml_ops import portable, remaining_ml_ops
from .onnx_utils import op_types, save
from .quiet import silenced
from .sources.base import SourceModel

SIGNATURE = "serving_default"
TF_NATIVE_KINDS = ("keras",)  # source kinds whose `native` is a tf.Module with a named `serve` function


def quiet_tensorflow() -> Any:
    """Import tensorflow with its C++ and Python logging turned down; name the extra when missing."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with silenced():  # absl prints oneDNN/CUDA notes from C++ at import, whatever the log level
        tf = require("tensorflow", "convert", "tensorflow-cpu")
    tf.get_logger().setLevel("ERROR")
    return tf


def onnx2tf_unsupported(model: Any) -> list[str]:
    """ONNX operators onnx2tf has no converter for (it keeps one module per operator in onnx2tf.ops)."""
    if importlib.util.find_spec("onnx2tf") is None:
        return []
    model = portable(model)
    ml = set(remaining_ml_ops(model))
    with silenced():  # finding onnx2tf.ops.X imports onnx2tf, and with it tensorflow, which prints from C++
        return sorted(ml | {op for op in op_types(model) - ml if importlib.util.find_spec(f"onnx2tf.ops.{op}") is None})


def tflite_converter(source: SourceModel, scratch: Path, cache: dict[str, Any]) -> Any:
    """A fresh tf.lite.TFLiteConverter for `source` (the intermediate SavedModel is built once per conversion)."""
    tf = quiet_tensorflow()
    if "tf_saved_model" not in cache:
        build = _from_tf_module if source.kind in TF_NATIVE_KINDS else _from_onnx
        cache["tf_saved_model"] = build(source, scratch / "tf_saved_model")
    return tf.lite.TFLiteConverter.from_saved_model(str(cache["tf_saved_model"]), signature_keys=[SIGNATURE])


def _from_onnx(source: SourceModel, out: Path) -> Path:
    onnx2tf = require("onnx2tf", "convert")
    quiet_tensorflow()
    graph = portable(source.onnx_model)
    bad = onnx2tf_unsupported(graph)
    if bad:
        raise UnsupportedModelError(f"tflite cannot express the ONNX operator(s) {', '.join(bad)}; use --to onnx")
    onnx_path = save(graph, out.parent / "source.onnx")
    keep_layout = [s.name for s in source.schema.inputs if len(s.shape) >= 3]
    try:
        with silenced():
            onnx2tf.convert(
                input_onnx_file_path=str(onnx_path), output_folder_path=str(out),
                keep_ncw_or_nchw_or_ncdhw_input_names=keep_layout or None,
                non_verbose=True, verbosity="error",
            )
    except SystemExit:
        raise ConversionError("onnx2tf could not convert the ONNX graph (it exited); try --to onnx or openvino") from None
    except Exception as exc:
        raise ConversionError(f"onnx2tf failed: {_first_line(exc)}") from None
    if not (out / "saved_model.pb").is_file():
        raise ConversionError("onnx2tf wrote no SavedModel; the graph may use an operator it cannot convert")
    _check_signature(out, source)
    return out


def _from_tf_module(source: SourceModel, out: Path) -> Path:
    tf = quiet_tensorflow()
    module = source.native  # a tf.Module with a `serve` tf.function (see sources/keras.py)
    try:
        with silenced():
            tf.saved_model.save(module, str(out), signatures={SIGNATURE: module.serve.get_concrete_function()})
    except Exception as exc:
        raise ConversionError(f"cannot save the TensorFlow model as a SavedModel: {_first_line(exc)}") from None
    return out


def _check_signature(path: Path, source: SourceModel) -> None:
    tf = quiet_tensorflow()
    sig = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    inputs = set(sig.structured_input_signature[1])
    outputs = set(sig.structured_outputs)
    want_in = {s.name for s in source.schema.inputs}
    want_out = {s.name for s in source.schema.outputs}
    if inputs != want_in or outputs != want_out:
        raise ConversionError(
            f"onnx2tf renamed the model's tensors (inputs {sorted(inputs)}, outputs {sorted(outputs)}; "
            f"expected {sorted(want_in)} and {sorted(want_out)}); rename them to plain identifiers in the source"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
