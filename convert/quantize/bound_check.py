"""Does a candidate int8 artifact meet its bound? The one check every recipe fallback asks.

It runs the candidate on the backend that will run it on the device, on the conversion's validation
data, and asks `convert.validate.meets_bound` (the same bound `edgeml convert` applies before an
artifact enters a bundle). `score` ranks failed attempts (the best one is kept when none passes):
the lowest mean row cosine over the float outputs, raised to the top-1 agreement for classifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.runtime.backends import BackendOptions, get_backend

from ..execution import run_all
from ..options import Precision
from ..validate import TaskInfo, meets_bound

Outputs = dict[str, np.ndarray]


@dataclass
class Verdict:
    passed: bool
    detail: str
    score: float  # higher is better; 1.0 = identical to the source

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "result": self.detail, "score": round(self.score, 5)}


class BoundCheck:
    """Judges candidate artifacts of one conversion at one precision (the reference is computed once)."""

    def __init__(self, ctx: Any, precision: Precision) -> None:
        source = ctx.source
        self.precision = precision
        self.info = TaskInfo(source.task, source.label_output, source.score_output, source.labels,
                             ctx.options.detection_layout)
        self.tolerance = ctx.options.tolerance_for(precision, source.task)
        self.feeds = ctx.validation.feeds
        self.labels = ctx.validation.labels
        self.schema = source.schema
        if "validation_reference" not in ctx.cache:
            ctx.cache["validation_reference"] = run_all(source.reference, self.feeds, source.schema)
        self.reference: Outputs = ctx.cache["validation_reference"]

    def outputs(self, backend: str, path: Path) -> Outputs:
        session = get_backend(backend).load(path, BackendOptions(threads=1, precision=self.precision.value))
        return run_all(session.run, self.feeds, self.schema)

    def judge(self, backend: str, path: Path) -> Verdict:
        return self.judge_outputs(self.outputs(backend, path))

    def judge_outputs(self, actual: Outputs) -> Verdict:
        passed, detail = meets_bound(self.info, self.precision, self.reference, actual, self.tolerance, self.labels)
        return Verdict(passed, detail, similarity(self.reference, actual))


def similarity(reference: Outputs, actual: Outputs) -> float:
    """The lowest mean per-sample cosine between float outputs (flattened per sample); 0 when missing."""
    scores = []
    for name, ref in reference.items():
        ref = np.asarray(ref)
        if ref.dtype.kind not in "fc":
            continue
        got = actual.get(name)
        if got is None or np.asarray(got).size != ref.size:
            return 0.0
        a = ref.reshape(len(ref), -1).astype(np.float64)
        b = np.asarray(got).reshape(len(ref), -1).astype(np.float64)
        if not np.all(np.isfinite(b)):
            return 0.0
        num = (a * b).sum(axis=1)
        den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(den > 0, num / np.maximum(den, 1e-30), (np.abs(a - b).max(axis=1) == 0).astype(float))
        scores.append(float(cos.mean()))
    return min(scores) if scores else 1.0
