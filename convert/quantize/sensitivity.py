"""Rank the quantizable nodes of an ONNX graph by how much int8 hurts them, most sensitive first.

The fp32 activations come from onnxruntime.quantization's own debugging helpers (qdq_loss_debug:
every intermediate tensor made a graph output, collected over a few samples). A node's error is the
relative error int8 adds to what it consumes: its activation inputs fake-quantized per tensor
(uint8, the range ORT's calibrator or dynamic quantizer would take) plus its weight initializer
fake-quantized per output channel (int8, 7 bits as REDUCE_RANGE does). The ranking feeds
`nodes_to_exclude`, the documented remedy for the layers int8 breaks.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..onnx_utils import onnx_module

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
SAMPLES = 8  # a few samples are enough to see which ranges int8 cannot hold


def _rel_error(x: np.ndarray, q: np.ndarray) -> float:
    norm = float(np.linalg.norm(x))
    return float(np.linalg.norm(x - q)) / norm if norm > 0 else 0.0


def _fake_quant_activation(x: np.ndarray) -> np.ndarray:
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_quant_weight(w: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    scale = np.abs(moved).max(axis=1, keepdims=True) / 63.0  # 7-bit symmetric (reduce_range)
    scale[scale == 0] = 1.0
    q = np.clip(np.round(moved / scale), -64, 63) * scale
    return np.moveaxis(q.reshape(np.moveaxis(w, axis, 0).shape), 0, axis)


def _weight_axis(op: str, w: np.ndarray) -> int:
    return 0 if op in ("Conv", "ConvTranspose", "Gemm") else w.ndim - 1


class _Reader:
    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def rank_nodes(model_path: Path, feeds: dict[str, np.ndarray], scratch: Path) -> list[tuple[str, float]]:
    """(node name, error) for every named Conv/MatMul/Gemm node of the model at `model_path`, worst first."""
    from onnxruntime.quantization import qdq_loss_debug as debug
    from onnx import numpy_helper

    onnx = onnx_module()
    model = onnx.load_model(str(model_path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    augmented = scratch / "sensitivity_augmented.onnx"
    n = len(next(iter(feeds.values())))
    samples = [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(min(n, SAMPLES))]
    logging.disable(logging.WARNING)
    try:
        with contextlib.chdir(scratch):
            debug.modify_model_output_intermediate_tensors(str(model_path), str(augmented))
            activations = debug.collect_activations(str(augmented), _Reader(samples))
        for name in feeds:
            activations.setdefault(name, [s[name] for s in samples])
    finally:
        logging.disable(logging.NOTSET)
    ranked = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS or not node.name:
            continue
        error = 0.0
        for pos, name in enumerate(node.input[:2]):
            if name in weights:
                w = weights[name].astype(np.float32)
                if w.ndim >= 2 and pos == 1:
                    error += _rel_error(w, _fake_quant_weight(w, _weight_axis(node.op_type, w)))
            elif name in activations:
                error += float(np.mean([_rel_error(a, _fake_quant_activation(a)) for a in activations[name]]))
        ranked.append((node.name, error))
    return sorted(ranked, key=lambda item: -item[1])


def name_nodes(model: Any) -> None:
    """Give every unnamed node a unique name (nodes_to_exclude addresses nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
