"""The recipe of a run (RunManifest.recipe): what `edgeml train --from-fleet` needs to train the same way again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import BUNDLED_TARGET
from .options import Device, ExplainKind, SearchKind, TaskKind, TrainOptions

# TrainOptions fields copied as they are (enums by value); out, force, mlflow and register are per run
FIELDS = ("model", "dataset", "target", "task", "search", "trials", "cv", "test_size", "sensitive", "bias_threshold",
          "positive_label", "seed", "device", "epochs", "explain", "robustness")
ENUMS = {"task": TaskKind, "search": SearchKind, "device": Device, "explain": ExplainKind}


def recipe_of(options: TrainOptions, summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(options, k) for k in FIELDS}
    out = {k: v.value if hasattr(v, "value") else v for k, v in out.items()}
    out["task"] = summary["task"]  # the resolved task, not None
    out["target"] = options.target or (BUNDLED_TARGET if options.dataset else None)
    out["data"] = str(Path(options.data).resolve()) if options.data is not None else None
    out["data_sha256"] = summary["data"].get("sha256")
    out["holdout_rows"] = options.holdout_rows
    return out


def options_from(recipe: dict[str, Any], out: Path, **overrides: Any) -> TrainOptions:
    """TrainOptions that repeat the recipe into `out` (overrides win)."""
    kwargs = {k: recipe.get(k) for k in FIELDS if recipe.get(k) is not None}
    kwargs = {k: ENUMS[k](v) if k in ENUMS else v for k, v in kwargs.items()}
    if recipe.get("data"):
        kwargs["data"] = Path(recipe["data"])
    return TrainOptions(out=out, **{**kwargs, **overrides})
