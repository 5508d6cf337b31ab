"""fp16 ONNX: weights and activations in float16, inputs and outputs kept float32 (onnxconverter-common).

Only the neural part of the graph is converted: the nodes from the first Conv/MatMul/Gemm onwards.
Preprocessing in front of it (skl2onnx's Imputer, Scaler, OneHotEncoder, Concat...) stays float32,
so tabular pipelines keep their exact feature handling and ai.onnx.ml operators never see float16.
"""

from __future__ import annotations

from typing import Any

from edgeml.errors import UnsupportedModelError, require

from ..onnx_utils import op_types

WEIGHT_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def _float32_nodes(model: Any) -> list[str]:
    """Names of nodes that stay float32: ai.onnx.ml nodes and everything upstream of the first weight op."""
    nodes = list(model.graph.node)
    for i, node in enumerate(nodes):
        if not node.name:
            node.name = f"node_{i}_{node.op_type}"
    downstream: set[str] = set()
    produced_by_neural: set[str] = set()
    for node in nodes:  # graph nodes are topologically sorted
        if node.op_type in WEIGHT_OPS or any(i in produced_by_neural for i in node.input):
            downstream.add(node.name)
            produced_by_neural.update(node.output)
    return [n.name for n in nodes if n.name not in downstream or n.domain == "ai.onnx.ml"]


def to_fp16(model: Any) -> Any:
    require("onnxconverter_common", "convert", "onnxconverter-common")
    from onnxconverter_common import float16

    if not op_types(model) & WEIGHT_OPS:
        raise UnsupportedModelError("fp16 only changes Conv, MatMul and Gemm weights and this graph has none; drop fp16 from --precision")
    model = type(model).FromString(model.SerializeToString())  # never touch the caller's graph
    block = _float32_nodes(model)
    return float16.convert_float_to_float16(
        model, keep_io_types=True, node_block_list=block,
        op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST),
    )
