"""TensorFlow sources: Keras models (`.keras`, `.h5`) and SavedModel directories.

Both become one `tf.function` taking and returning tensors named like the schema; tf2onnx turns it
into the ONNX graph (for the onnx and openvino targets) and the TFLite exporter converts it straight
from TensorFlow. Inputs are named after the Keras input layers (or the SavedModel's serving
signature); outputs are `output` (one) or `output_0`, `output_1`, ... (several), as for PyTorch.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeml import dtypes
from edgeml.errors import ConversionError, SourceError, UsageError, require
from edgeml.hashing import sha256_file
from edgeml.schema import TensorSpec

from ..onnx_utils import onnx_module, schema_from_onnx
from ..options import ConvertOptions
from ..quiet import silenced
from .base import SourceModel
from .tasks import guess_task

KERAS_SUFFIXES = (".keras", ".h5")
SIGNATURE = "serving_default"


class KerasLoader:
    name = "keras"
    description = "Keras model (.keras/.h5) or a TensorFlow SavedModel directory"

    def matches(self, source: str) -> bool:
        return source.lower().endswith(KERAS_SUFFIXES) or (Path(source) / "saved_model.pb").is_file()

    def load(self, source: str, options: ConvertOptions) -> SourceModel:
        from ..tf_graph import quiet_tensorflow

        tf = quiet_tensorflow()
        path = Path(source)
        if not path.exists():
            raise SourceError(f"source {path} not found")
        if path.is_dir():
            call, specs, out_names, tracked, how = _saved_model(tf, path, options)
        else:
            call, specs, out_names, tracked, how = _keras_file(tf, path, options)
        native = _serving_module(tf, call, specs, out_names, tracked)
        onnx_model = _to_onnx(native, specs, out_names, options.opset)
        schema = schema_from_onnx(onnx_model)
        for spec, given in zip(schema.inputs, specs):
            spec.shape = list(given.shape)
        task, score_output = guess_task(schema, options.task)
        return SourceModel(
            kind=self.name, framework="tensorflow", framework_version=tf.__version__, path=path,
            sha256=sha256_file(path) if path.is_file() else sha256_file(path / "saved_model.pb"),
            onnx_model=onnx_model, schema=schema, task=task, reference=_reference(native, specs),
            labels=options.labels, score_output=score_output, details={"tensorflow_format": how},
            native=native,
        )


def _keras_file(tf: Any, path: Path, options: ConvertOptions):
    keras = require("keras", "convert")
    try:
        with silenced():
            model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:
        raise SourceError(f"{path} is not a loadable Keras model: {_first_line(exc)}") from None
    tensors = list(getattr(model, "inputs", None) or [])
    if options.inputs:
        specs = list(options.inputs)
    elif tensors:
        specs = [TensorSpec(_identifier(getattr(t, "name", ""), f"input_{i}" if len(tensors) > 1 else "input"),
                            dtypes.dtype(str(t.dtype).replace("tf.", "")).name, [None, *[_dim(d) for d in t.shape[1:]]])
                 for i, t in enumerate(tensors)]
    else:
        raise UsageError(f"{path} has no recorded input shape; pass --input NAME:DTYPE:SHAPE, e.g. --input input:float32:?x8")
    outputs = list(getattr(model, "outputs", None) or [None])
    out_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    multi = len(specs) > 1

    def call(feeds: dict[str, Any]) -> list[Any]:
        args = [feeds[s.name] for s in specs]
        out = model(args if multi else args[0], training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    return call, specs, out_names, model, "keras"


def _saved_model(tf: Any, path: Path, options: ConvertOptions):
    try:
        with silenced():
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise SourceError(f"{path} is not a readable SavedModel: {_first_line(exc)}") from None
    if SIGNATURE not in loaded.signatures:
        raise SourceError(f"SavedModel {path} has no {SIGNATURE!r} signature (has {', '.join(loaded.signatures) or 'none'})")
    sig = loaded.signatures[SIGNATURE]
    given = {s.name: s for s in options.inputs}
    specs = [given.get(name) or TensorSpec(name, s.dtype.name, [None if d is None else int(d) for d in s.shape])
             for name, s in sorted(sig.structured_input_signature[1].items())]
    keys = sorted(sig.structured_outputs)

    def call(feeds: dict[str, Any]) -> list[Any]:
        result = sig(**{s.name: feeds[s.name] for s in specs})
        return [result[k] for k in keys]

    return call, specs, keys, loaded, "saved_model"


def _serving_module(tf: Any, call: Callable, specs: list[TensorSpec], out_names: list[str], tracked: Any) -> Any:
    """A tf.Module whose `serve` takes the schema's inputs positionally and returns {output name: tensor}."""
    signature = [tf.TensorSpec(s.shape, dtypes.to_numpy(s.dtype), name=s.name) for s in specs]

    @tf.function(input_signature=signature)
    def serve(*args: Any) -> dict[str, Any]:
        outs = call({s.name: a for s, a in zip(specs, args)})
        return {n: tf.identity(o, name=n) for n, o in zip(out_names, outs)}

    module = tf.Module()
    module.model = tracked
    # Keras 3 wraps tf.Variables; track the raw ones so a SavedModel of this module holds (and freezes) them.
    module.tf_variables = [v if isinstance(v, tf.Variable) else v.value for v in getattr(tracked, "variables", [])]
    module.serve = serve
    return module


def _to_onnx(native: Any, specs: list[TensorSpec], out_names: list[str], opset: int) -> Any:
    tf2onnx = require("tf2onnx", "convert")
    onnx = onnx_module()
    try:
        with silenced(), tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "model.onnx"
            tf2onnx.convert.from_function(native.serve, input_signature=native.serve.input_signature,
                                          opset=opset, output_path=str(out))
            model = onnx.load_model(str(out))
    except Exception as exc:
        raise ConversionError(f"tf2onnx failed: {_first_line(exc)}") from None
    _rename_io(model, [s.name for s in specs], out_names)
    return model


def _rename_io(model: Any, inputs: list[str], outputs: list[str]) -> None:
    """Give graph inputs/outputs the schema's names (tf2onnx appends ':0' or uses op names)."""
    init = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init]
    mapping = {vi.name: new for vi, new in zip(graph_inputs, inputs)}
    by_prefix = {o.name.split(":")[0]: o.name for o in model.graph.output}
    for new in outputs:
        old = by_prefix.get(new) or next((o.name for o in model.graph.output if new in o.name), None)
        if old is not None:
            mapping[old] = new
    for vi in list(model.graph.input) + list(model.graph.output):
        vi.name = mapping.get(vi.name, vi.name)
    for node in model.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def _reference(native: Any, specs: list[TensorSpec]) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = native.serve(*[feeds[s.name] for s in specs])
        return {k: v.numpy() for k, v in out.items()}

    return run


def _identifier(name: str, default: str) -> str:
    clean = re.sub(r"\W", "_", name.split(":")[0]).strip("_")
    return clean if clean and not clean.startswith("keras_tensor") else default


def _dim(d: Any) -> int | None:
    return None if d is None else int(d)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


LOADER = KerasLoader()
