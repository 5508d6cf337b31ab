"""Guessing the task of tensor models (PyTorch, ONNX) when --task is not given."""

from __future__ import annotations

from edgeml.schema import Schema

from ..options import Task


def guess_task(schema: Schema, explicit: Task | None) -> tuple[Task, str | None]:
    """A single float output of shape [batch, K>1] is taken as class scores; else regression.

    Returns the task and the output whose argmax is the predicted class (classification only).
    """
    floats = [o for o in schema.outputs if o.dtype.startswith("float")]
    scores = floats[0] if floats and len(floats[0].shape) == 2 and (floats[0].shape[1] or 0) > 1 else None
    if explicit is not None:
        return explicit, (floats[0].name if floats and explicit == Task.CLASSIFICATION else None)
    if scores is not None and len(schema.outputs) == 1:
        return Task.CLASSIFICATION, scores.name
    return Task.REGRESSION, None
