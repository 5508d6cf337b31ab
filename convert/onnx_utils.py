"""Small helpers over ONNX graphs: schemas, operator sets, saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeml.errors import require
from edgeml.schema import Schema, TensorSpec

_ELEM_TO_DTYPE = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "float64"}


def onnx_module():
    return require("onnx", "convert")


def _spec(value_info: Any) -> TensorSpec:
    tt = value_info.type.tensor_type
    dtype = _ELEM_TO_DTYPE.get(tt.elem_type, f"onnx-elem-{tt.elem_type}")
    shape: list[int | None] = []
    if tt.HasField("shape"):
        for dim in tt.shape.dim:
            shape.append(dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None)
    return TensorSpec(value_info.name, dtype, shape)


def schema_from_onnx(model: Any) -> Schema:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [_spec(i) for i in model.graph.input if i.name not in initializers]
    return Schema(inputs=inputs, outputs=[_spec(o) for o in model.graph.output])


def op_types(model: Any) -> set[str]:
    ops = {n.op_type for n in model.graph.node}
    for fn in model.functions:
        ops |= {n.op_type for n in fn.node}
    return ops


def save(model: Any, path: Path) -> Path:
    onnx = onnx_module()
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def set_batch_dynamic(model: Any, names: list[str] | None = None) -> None:
    """Mark the first axis of the given graph inputs/outputs (all when None) as dynamic."""
    for vi in list(model.graph.input) + list(model.graph.output):
        if names is not None and vi.name not in names:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "batch"
