"""What a hyperparameter search returns, locally or on Ray (train/search.py, train/ray_search.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .options import SearchKind


@dataclass
class SearchResult:
    estimator: Any  # fitted on the whole training split with the best parameters
    kind: SearchKind
    scoring: str
    best_params: dict[str, Any]
    cv_score: float | None  # mean CV score of the best parameters
    cv_std: float | None
    candidates: int
    seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)  # params and mean score of each candidate

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "scoring": self.scoring, "best_params": _plain(self.best_params),
                "cv_score": self.cv_score, "cv_std": self.cv_std, "candidates": self.candidates,
                "seconds": round(self.seconds, 3), "trials": _plain(self.trials)}


def _plain(value: Any) -> Any:
    """JSON-able copy: numpy scalars to Python, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
