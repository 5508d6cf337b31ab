"""Which int8 recipe family a graph belongs to: transformer, convolutional or plain MatMul (MLP).

Transformer graphs are recognised by their attention and normalisation operators (torch.onnx writes
LayerNormalization and Erf/Gelu; older exporters decompose LayerNorm into ReduceMean/Pow/Sqrt): their
activations carry outliers (softmax inputs, residual sums) that one calibrated int8 range per tensor
cannot hold, so they get the transformer recipes (NNCF's ModelType.TRANSFORMER, ORT dynamic int8).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from ..onnx_utils import op_types

CONV_OPS = {"Conv", "ConvTranspose"}
MATMUL_OPS = {"MatMul", "Gemm", "Attention", "LSTM", "GRU"}
ATTENTION_OPS = {"Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization"}
TRANSFORMER_MARKERS = {"LayerNormalization", "Gelu", "FastGelu", "BiasGelu", "Erf"}


class GraphFamily(str, Enum):
    TRANSFORMER = "transformer"
    CNN = "cnn"
    MLP = "mlp"
    NONE = "none"  # nothing int8 would change


def _decomposed_layer_norm(ops: set[str]) -> bool:
    return {"ReduceMean", "Sub", "Pow", "Sqrt", "Div"} <= ops


def is_transformer(ops: set[str]) -> bool:
    """Attention (MatMul feeding Softmax, or a fused attention op) next to LayerNorm/GELU."""
    if ops & ATTENTION_OPS:
        return True
    attention = "MatMul" in ops and "Softmax" in ops
    return attention and bool(ops & TRANSFORMER_MARKERS or _decomposed_layer_norm(ops))


def family(model: Any) -> GraphFamily:
    ops = op_types(model)
    if is_transformer(ops):
        return GraphFamily.TRANSFORMER  # a ViT's patch embedding is a Conv: attention decides
    if ops & CONV_OPS:
        return GraphFamily.CNN
    if ops & MATMUL_OPS:
        return GraphFamily.MLP
    return GraphFamily.NONE
