"""Rewrite the ai.onnx.ml operators that have exact standard-ONNX equivalents, so TFLite and OpenVINO
can run scikit-learn neural pipelines (StandardScaler + MLP...). Trees, SVMs and linear models keep
their ai.onnx.ml operators and stay ONNX-only.

    Scaler(x; offset, scale)              -> Mul(Sub(x, offset), scale)
    ArrayFeatureExtractor(classes, idx)   -> Gather(classes, idx, axis=0)   (classes a 1-D initializer)
    Imputer(x; imputed values, NaN)       -> Where(IsNaN(x), values, x)     (Equal(x, v) for a non-NaN v)
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .onnx_utils import onnx_module

ML = "ai.onnx.ml"
Rewrite = Callable[[Any, Any, dict[str, Any]], list[Any] | None]  # (onnx, node, initializers) -> new nodes


def _scaler(onnx: Any, node: Any, inits: dict[str, Any]) -> list[Any]:
    attrs = {a.name: list(a.floats) for a in node.attribute}
    offset, scale = f"{node.name or node.output[0]}_offset", f"{node.name or node.output[0]}_scale"
    inits[offset] = onnx.numpy_helper.from_array(np.asarray(attrs.get("offset", [0.0]), np.float32), offset)
    inits[scale] = onnx.numpy_helper.from_array(np.asarray(attrs.get("scale", [1.0]), np.float32), scale)
    centred = f"{node.output[0]}_centred"
    return [onnx.helper.make_node("Sub", [node.input[0], offset], [centred]),
            onnx.helper.make_node("Mul", [centred, scale], [node.output[0]])]


def _array_feature_extractor(onnx: Any, node: Any, inits: dict[str, Any]) -> list[Any] | None:
    table = inits.get(node.input[0])
    if table is None or len(table.dims) != 1:
        return None
    return [onnx.helper.make_node("Gather", list(node.input), list(node.output), axis=0)]


def _imputer(onnx: Any, node: Any, inits: dict[str, Any]) -> list[Any] | None:
    return imputer_as_where(onnx, node, inits, np.float32)


def imputer_as_where(onnx: Any, node: Any, inits: dict[str, Any], dtype: type = np.float32) -> list[Any] | None:
    """Imputer -> Where(IsNaN(x), fill, x) with `dtype` constants (ONNX Runtime's Imputer has no float64 kernel)."""
    attrs = {a.name: a for a in node.attribute}
    if "imputed_value_floats" not in attrs:
        return None  # integer imputation: keep the ai.onnx.ml node
    base = node.name or node.output[0]
    fill = f"{base}_fill"
    inits[fill] = onnx.numpy_helper.from_array(np.asarray(list(attrs["imputed_value_floats"].floats), dtype), fill)
    replaced = attrs["replaced_value_float"].f if "replaced_value_float" in attrs else float("nan")
    missing = f"{base}_missing"
    if np.isnan(replaced):
        test = onnx.helper.make_node("IsNaN", [node.input[0]], [missing])
    else:
        value = f"{base}_replaced"
        inits[value] = onnx.numpy_helper.from_array(np.asarray([replaced], dtype), value)
        test = onnx.helper.make_node("Equal", [node.input[0], value], [missing])
    return [test, onnx.helper.make_node("Where", [missing, fill, node.input[0]], [node.output[0]])]


REWRITES: dict[str, Rewrite] = {"Scaler": _scaler, "ArrayFeatureExtractor": _array_feature_extractor, "Imputer": _imputer}


def onnx_only_reason(fmt: str, operators: list[str]) -> str:
    """Why `fmt` refuses a graph that still holds these operators after the portable rewrites."""
    return (f"the graph uses {', '.join(operators)}, which {fmt} cannot express (scikit-learn trees, SVMs and "
            "linear models compile to ai.onnx.ml operators); supported here: neural models (PyTorch, Keras, "
            "scikit-learn MLP pipelines) and ONNX graphs of standard operators")


def remaining_ml_ops(model: Any) -> list[str]:
    return sorted({n.op_type for n in model.graph.node if n.domain == ML})


def portable(model: Any) -> Any:
    """A copy of `model` with every rewritable ai.onnx.ml node replaced (the same graph when none is)."""
    if not remaining_ml_ops(model):
        return model
    onnx = onnx_module()
    model = type(model).FromString(model.SerializeToString())
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        rewrite = REWRITES.get(node.op_type) if node.domain == ML else None
        new = rewrite(onnx, node, inits) if rewrite else None
        nodes.extend(new if new is not None else [node])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits.values())
    if not remaining_ml_ops(model):
        kept = [o for o in model.opset_import if o.domain != ML]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model
