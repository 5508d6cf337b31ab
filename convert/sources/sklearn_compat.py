"""Compatibility shim for skl2onnx 1.20 with onnx >= 1.23.

skl2onnx's HistGradientBoosting converter mixes Python bools into the integer attribute
`nodes_missing_value_tracks_true`; onnx 1.23 rejects bools in integer lists. Coerce them to int.
"""

from __future__ import annotations

_patched = False


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
    _patched = True
