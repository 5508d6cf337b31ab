"""Compatibility shims for skl2onnx 1.20 (and the onnxmltools converters it runs) with onnx >= 1.23.

- skl2onnx's HistGradientBoosting converter mixes Python bools into the integer attribute
  `nodes_missing_value_tracks_true`; onnx 1.23 rejects bools in integer lists. Coerce them to int.
- Tree converters store thresholds as float32 attributes even for double inputs. Inside
  `float64_thresholds()`, a tree node's thresholds are stored as a float64 tensor
  (`nodes_values_as_tensor`, ai.onnx.ml opset 3) at the precision the converter computed them in
  (LightGBM's are its own float64 values), so a double graph compares like the estimator.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
_patched = False
_double_depth = 0


@contextmanager
def float64_thresholds() -> Iterator[None]:
    global _double_depth
    patch_skl2onnx()
    _double_depth += 1
    try:
        yield
    finally:
        _double_depth -= 1


def patch_skl2onnx() -> None:
    global _patched
    if _patched:
        return
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args, **kwargs):
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node
    _patch_container()
    _patched = True


def _patch_container() -> None:
    import importlib.util

    from skl2onnx.common._container import ModelComponentContainer

    _hook(ModelComponentContainer)
    if importlib.util.find_spec("onnxmltools") is not None:  # native booster files go through its own container
        from onnxmltools.convert.common._container import ModelComponentContainer as MlToolsContainer

        _hook(MlToolsContainer)


def _hook(container_class: type) -> None:
    import numpy as np
    from onnx import numpy_helper

    original = container_class.add_node

    def add_node(self, op_type, inputs, outputs, *args, **attrs):
        if _double_depth and op_type in TREE_OPS and "nodes_values" in attrs:
            values = np.asarray(attrs.pop("nodes_values"), dtype=np.float64).ravel()
            attrs["nodes_values_as_tensor"] = numpy_helper.from_array(values, "nodes_values")
            attrs["op_version"] = 3
            args = args[:1]  # op_domain only; the version is now 3
        return original(self, op_type, inputs, outputs, *args, **attrs)

    container_class.add_node = add_node
