"""Deciding the task of tensor models (PyTorch, ONNX, Keras) when --task is not given.

Rules, in order (an explicit --task always wins):

1. From the schema (`guess_task`, at load): one float output [batch] or [batch, 1] is a regression;
   one float output [batch, K>1] is class scores, unless an output's name says embedding
   (`EMBEDDING_HINTS`: embed, pooler, sentence, hidden); any other layout (several outputs,
   [batch, a, b] maps, sequences, one detection tensor) is `other`: judged by the relative bound
   only — pass --task detection / embedding for their task bounds.
2. From the source's outputs on the validation data (`refine_task`, before any export), for [batch, K]
   class scores: rows of L2 norm 1 are an embedding; rows that are probabilities (non-negative,
   summing to 1) or K equal to the number of --labels are class scores; otherwise K <=
   `MAX_INFERRED_CLASSES` is class scores and a larger K is refused with a message asking for
   --task classification or --task embedding (a 384-dim embedding is not a 384-class classifier).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeml.errors import UsageError
from edgeml.schema import Schema
from edgeml.task_metrics import probability_rows, unit_norm_rows

from ..options import Task

EMBEDDING_HINTS = ("embed", "pooler", "sentence", "hidden")
MAX_INFERRED_CLASSES = 256
TENSOR_KINDS = ("pytorch", "onnx", "keras")


def _hinted(name: str) -> bool:
    return any(h in name.lower() for h in EMBEDDING_HINTS)


def guess_task(schema: Schema, explicit: Task | None) -> tuple[Task, str | None]:
    """The task from the schema (rule 1) and the output whose argmax is the class (classification only)."""
    floats = [o for o in schema.outputs if o.dtype.startswith("float")]
    first = floats[0] if floats else None
    if explicit is not None:
        return explicit, (first.name if first is not None and explicit == Task.CLASSIFICATION else None)
    if any(_hinted(o.name) for o in floats):
        return Task.EMBEDDING, None
    if len(schema.outputs) != 1 or first is None:
        return Task.OTHER, None
    shape = first.shape
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return Task.REGRESSION, None
    if len(shape) == 2:
        return Task.CLASSIFICATION, first.name
    return Task.OTHER, None


def refine_task(kind: str, task: Task, score_output: str | None, explicit: Task | None,
                reference: dict[str, Any], labels: list[Any] | None) -> tuple[Task, str | None, str]:
    """Rule 2: (task, score output, the rule that decided) once the source's outputs are known."""
    if explicit is not None:
        return task, score_output, "--task"
    if kind not in TENSOR_KINDS or task != Task.CLASSIFICATION or score_output not in reference:
        return task, score_output, "inferred from the outputs' names and shapes"
    scores = np.asarray(reference[score_output])
    k = scores.shape[1] if scores.ndim == 2 else 0
    if unit_norm_rows(scores):
        return Task.EMBEDDING, None, f"output {score_output!r} rows have L2 norm 1"
    if labels and len(labels) == k:
        return task, score_output, f"{k} scores for {k} --labels"
    if probability_rows(scores):
        return task, score_output, f"output {score_output!r} rows are probabilities"
    if k > MAX_INFERRED_CLASSES:
        raise UsageError(f"cannot tell whether output {score_output!r} [batch, {k}] holds class scores or an embedding; "
                         "pass --task classification or --task embedding")
    return task, score_output, f"one [batch, {k}] float output: class scores"
