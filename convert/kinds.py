"""The precisions and tasks of `edgeml convert` (no dependencies: options and bounds both read them)."""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Task(str, Enum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    EMBEDDING = "embedding"
    DETECTION = "detection"
    CLUSTERING = "clustering"
    OTHER = "other"
