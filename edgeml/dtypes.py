"""Tensor element types and their spellings in numpy, ONNX and the Open Inference Protocol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str  # edgeml's spelling, used in manifests and on the CLI ("float32", "string", ...)
    numpy: str  # numpy dtype string ("object" never: strings use numpy unicode arrays)
    oip: str  # Open Inference Protocol / KServe v2 datatype
    onnx_tensor: str  # ONNX Runtime's type string, "tensor(float)"


_DTYPES = [
    DType("float32", "float32", "FP32", "tensor(float)"),
    DType("float16", "float16", "FP16", "tensor(float16)"),
    DType("float64", "float64", "FP64", "tensor(double)"),
    DType("int8", "int8", "INT8", "tensor(int8)"),
    DType("uint8", "uint8", "UINT8", "tensor(uint8)"),
    DType("int16", "int16", "INT16", "tensor(int16)"),
    DType("int32", "int32", "INT32", "tensor(int32)"),
    DType("int64", "int64", "INT64", "tensor(int64)"),
    DType("bool", "bool", "BOOL", "tensor(bool)"),
    DType("string", "str", "BYTES", "tensor(string)"),
]
BY_NAME = {d.name: d for d in _DTYPES}
BY_OIP = {d.oip: d for d in _DTYPES}
BY_ONNX = {d.onnx_tensor: d for d in _DTYPES}
ALIASES = {"float": "float32", "double": "float64", "half": "float16", "int": "int64", "long": "int64", "str": "string"}


def dtype(name: str) -> DType:
    """Look up a dtype by edgeml name or common alias; raise ValueError naming the valid ones."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BY_NAME:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(BY_NAME)}")
    return BY_NAME[key]


def from_numpy(dt: np.dtype) -> DType:
    dt = np.dtype(dt)
    if dt.kind in ("U", "S", "O"):
        return BY_NAME["string"]
    return dtype(dt.name)


def to_numpy(name: str) -> np.dtype:
    d = dtype(name)
    return np.dtype(str) if d.name == "string" else np.dtype(d.numpy)
