"""Tree ensembles compiled at the precision scikit-learn computes in, so fp32 artifacts match it.

The reference a scikit-learn artifact is judged against is the estimator on float64 input: the float32
values the device receives, widened to float64 (the device never sees anything else, so these are the
values the model must reproduce). scikit-learn then computes:

- preprocessing (imputers, scalers, encoders) in float64;
- DecisionTree / RandomForest / ExtraTrees / GradientBoosting: features cast to float32, compared with
  float64 thresholds (skl2onnx adjusts its float32 thresholds so that comparison is exact);
- HistGradientBoosting: float64 features against float64 thresholds, which sit exactly on training
  values, so a float32 threshold sends those values down the wrong branch; LightGBM likewise compares
  in float64, with thresholds that can lie within one float32 step of training values.

A graph computed in float32 throughout differs by one rounding before a split and flips it (probability
errors of 0.005–0.15). For estimators of FEATURE_DTYPE the graph is therefore built as: float32 inputs ->
Cast(double) -> preprocessing in double -> the features at the estimator's own dtype -> trees (double
thresholds as ai.onnx.ml opset-3 tensors for float64 trees) -> float32 outputs. Inputs and outputs keep
the float32 contract; other estimators (linear, SVM, MLP) keep the plain float32 graph, which already
matches to ~1e-6 and stays portable to TFLite/OpenVINO.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from edgeml.schema import TensorSpec

from .sklearn_compat import TREE_OPS

# Final estimator class -> dtype it compares features in (registry; absent = plain float32 graph).
FEATURE_DTYPE: dict[str, str] = {
    **{name: "float32" for name in (
        "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
        "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
        "GradientBoostingClassifier", "GradientBoostingRegressor",
        "XGBClassifier", "XGBRegressor",  # XGBoost casts features to float32 itself
    )},
    "HistGradientBoostingClassifier": "float64",
    "HistGradientBoostingRegressor": "float64",
    # LightGBM compares float64 features with float64 thresholds, some within one float32 step of
    # training values: kept as float64 tensors (sklearn_compat.float64_thresholds).
    "LGBMClassifier": "float64",
    "LGBMRegressor": "float64",
}
ML = "ai.onnx.ml"
_TREE_OPS = TREE_OPS
Convert = Callable[[Any, list[tuple[str, str, list]]], Any]  # (estimator, [(name, dtype, shape)]) -> ModelProto


def feature_dtype(final: Any) -> str | None:
    return FEATURE_DTYPE.get(type(final).__name__)


def compile_at_source_precision(model: Any, final: Any, specs: list[TensorSpec], convert: Convert) -> Any:
    """The ONNX graph of `model` (ending in `final`, whose FEATURE_DTYPE is known), float32 in and out."""
    import onnx

    dtype = feature_dtype(final)
    widened = [(s.name, "float64" if s.dtype == "float32" else s.dtype, s.shape) for s in specs]
    steps = getattr(model, "steps", None)
    if steps and len(steps) > 1:
        pre = convert(model[:-1], widened)
        n = int(final.n_features_in_)
        with _thresholds(dtype):
            est = convert(final, [("features", dtype, [None, n])])
        graph = _chain(onnx, pre, est, dtype)
    else:
        with _thresholds(dtype):
            graph = convert(model, widened if dtype == "float64" else [(s.name, s.dtype, s.shape) for s in specs])
    if dtype == "float64":
        _exact_hist_thresholds(onnx, graph, final)
        float_tree_outputs(onnx, graph)
    return float32_io(onnx, graph)


def loadable(model: Any) -> Any:
    """`model` once ONNX Runtime accepts it (every node has a kernel for its types); raises otherwise."""
    import onnxruntime as ort

    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return model


def _thresholds(dtype: str) -> Any:
    from contextlib import nullcontext

    from .sklearn_compat import float64_thresholds  # noqa: F811 (lazy: patches skl2onnx on first use)

    return float64_thresholds() if dtype == "float64" else nullcontext()


def _chain(onnx: Any, pre: Any, est: Any, dtype: str) -> Any:
    """pre's single output (double features) -> Cast(dtype) -> est's single input; est's outputs."""
    pre = onnx.compose.add_prefix(_double_imputers(onnx, pre), "pre_", rename_inputs=False)
    est = onnx.compose.add_prefix(est, "est_", rename_outputs=False)
    (features,), (est_input,) = [o.name for o in pre.graph.output], [i.name for i in est.graph.input]
    cast = onnx.helper.make_node("Cast", [features], [est_input], to=_elem(onnx, dtype), name="features_cast")
    graph = onnx.helper.make_graph(
        list(pre.graph.node) + [cast] + list(est.graph.node), est.graph.name,
        list(pre.graph.input), list(est.graph.output), list(pre.graph.initializer) + list(est.graph.initializer))
    versions: dict[str, int] = {}
    for op in list(pre.opset_import) + list(est.opset_import):
        versions[op.domain] = max(versions.get(op.domain, 0), op.version)
    out = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in versions.items()])
    out.ir_version = max(pre.ir_version, est.ir_version)
    return out


def _double_imputers(onnx: Any, model: Any) -> Any:
    """Numeric Imputer nodes of a float64 preprocessing graph as IsNaN/Where in float64."""
    from ..ml_ops import imputer_as_where

    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        new = imputer_as_where(onnx, node, inits, np.float64) if node.op_type == "Imputer" and node.domain == ML else None
        nodes.extend(new if new is not None else [node])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits.values())
    return model


def _exact_hist_thresholds(onnx: Any, model: Any, est: Any) -> None:
    """Store HistGradientBoosting thresholds as float64 tensors (skl2onnx rounds them to float32)."""
    predictors = getattr(est, "_predictors", None)
    if not predictors:
        return
    per_iteration = len(predictors[0])
    for node in model.graph.node:
        if node.op_type not in _TREE_OPS:
            continue
        attrs = {a.name: a for a in node.attribute}
        modes = list(attrs["nodes_modes"].strings)
        values = [0.0 if mode == b"LEAF" else float(predictors[t // per_iteration][t % per_iteration].nodes[n]["num_threshold"])
                  for t, n, mode in zip(attrs["nodes_treeids"].ints, attrs["nodes_nodeids"].ints, modes)]
        node.attribute.remove(attrs.get("nodes_values") or attrs["nodes_values_as_tensor"])
        tensor = onnx.numpy_helper.from_array(np.asarray(values, np.float64), "nodes_values")
        node.attribute.append(onnx.helper.make_attribute("nodes_values_as_tensor", tensor))
    float_tree_outputs(onnx, model)


def float_tree_outputs(onnx: Any, model: Any) -> None:
    """ai.onnx.ml opset 3 (*_as_tensor attributes); tree outputs typed float32 as ONNX Runtime computes them."""
    for op in model.opset_import:
        if op.domain == ML:
            op.version = max(op.version, 3)
    # ONNX Runtime's tree kernels output float32 whatever the input type; converters declare double.
    tree_outputs = {o for n in model.graph.node if n.op_type in _TREE_OPS for o in n.output}
    for vi in list(model.graph.output) + list(model.graph.value_info):
        if vi.name in tree_outputs and vi.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE:
            vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def float32_io(onnx: Any, model: Any) -> Any:
    """Make every double graph input/output float32, with a Cast inside the graph."""
    double, flt = onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT
    head, tail = [], []
    rename: dict[str, str] = {}
    for vi in model.graph.input:
        if vi.type.tensor_type.elem_type == double:
            inner = f"{vi.name}__f64"
            rename[vi.name] = inner
            head.append(onnx.helper.make_node("Cast", [vi.name], [inner], to=double, name=f"{vi.name}_widen"))
            vi.type.tensor_type.elem_type = flt
    for node in model.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
    for vi in model.graph.output:
        if vi.type.tensor_type.elem_type == double:
            inner = f"{vi.name}__f64"
            for node in model.graph.node:
                node.output[:] = [inner if o == vi.name else o for o in node.output]
                node.input[:] = [inner if i == vi.name else i for i in node.input]
            tail.append(onnx.helper.make_node("Cast", [inner], [vi.name], to=flt, name=f"{vi.name}_narrow"))
            vi.type.tensor_type.elem_type = flt
    nodes = head + list(model.graph.node) + tail
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _elem(onnx: Any, dtype: str) -> int:
    return {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE}[dtype]
