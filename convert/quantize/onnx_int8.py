"""int8 ONNX with onnxruntime.quantization: a recipe per graph family, fallbacks until the bound is met.

The graph's family (quantize/graph_family.py) picks the first recipe (quantize/onnx_recipes.py):
dynamic int8 for transformer and MatMul graphs, static QDQ with per-channel weights for CNNs. When a
`check` is given (the conversion's bound check, quantize/bound_check.py) and the recipe misses the
bound, the family's next remedies are tried in order (other calibration methods, the most sensitive
nodes kept float, A16W8), at most MAX_ATTEMPTS in all. The first that meets the bound is kept; when
none does, the best one is returned and fails validation with its figures. Every attempt and its
result is recorded in the artifact details (`attempts`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeml.errors import ConversionError, DataError, EdgeMLError, UnsupportedModelError, require

from ..onnx_utils import onnx_module, op_types, save
from ..options import QuantMode, QuantOptions
from . import onnx_recipes
from .bound_check import Verdict
from .graph_family import CONV_OPS, MATMUL_OPS, GraphFamily, family
from .onnx_recipes import REDUCE_RANGE, RECIPES, Recipe
from .sensitivity import name_nodes, rank_nodes

DYNAMIC_OPS = MATMUL_OPS
MIN_CALIBRATION_SAMPLES = 16
MAX_ATTEMPTS = 4  # bounded: each attempt is one quantization plus one validation run
EXCLUDE_FRACTION = 0.1  # share of the quantizable nodes kept float by the "exclude" remedy (at least one)

Check = Callable[[Path], Verdict]  # an int8 ONNX file -> does it meet the bound?

__all__ = ["CONV_OPS", "DYNAMIC_OPS", "REDUCE_RANGE", "Int8Result", "quantize", "choose_mode"]


@dataclass
class Int8Result:
    model: Any
    details: dict[str, Any]


@dataclass
class _Attempt:
    recipe: Recipe
    path: Path | None
    verdict: Verdict | None = None
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


def choose_mode(model: Any, requested: QuantMode) -> QuantMode:
    """The mode of the first recipe for this graph (kept for callers that only need the mode)."""
    fam = _family(model)
    return requested if requested != QuantMode.AUTO else RECIPES[onnx_recipes.PLANS[fam][0]].mode


def _family(model: Any) -> GraphFamily:
    fam = family(model)
    if fam == GraphFamily.NONE:
        ops = op_types(model)
        raise UnsupportedModelError(
            "int8 would not change this model: it has no Conv, MatMul or Gemm to quantize "
            f"(operators: {', '.join(sorted(ops)[:8])}); drop int8 from --precision"
        )
    return fam


def _calibration_problem(calibration: dict[str, np.ndarray] | None) -> str | None:
    if calibration is None:
        return ("static int8 quantization of a convolutional graph needs --calibration FILE "
                "(.npz keyed by input name or .csv); or pass --quantization dynamic")
    n = len(next(iter(calibration.values())))
    if n < MIN_CALIBRATION_SAMPLES:
        return (f"static int8 quantization needs at least {MIN_CALIBRATION_SAMPLES} calibration samples "
                f"(got {n}); pass --calibration FILE with more samples, or --quantization dynamic")
    return None


def quantize(model: Any, options: QuantOptions, calibration: dict[str, np.ndarray] | None,
             check: Check | None = None, rank_feeds: dict[str, np.ndarray] | None = None) -> Int8Result:
    """int8 `model`; with `check`, fall back through the family's remedies until one meets the bound."""
    require("onnxruntime.quantization", "convert", "onnxruntime")
    fam = _family(model)
    names = onnx_recipes.plan(fam, options.mode, options.calibration_method)
    model = type(model).FromString(model.SerializeToString())
    name_nodes(model)  # nodes_to_exclude addresses nodes by name
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        pre, preprocessed = _preprocess(save(model, tmp / "fp32.onnx"), tmp)
        attempts: list[_Attempt] = []
        ranked: list[tuple[str, float]] | None = None
        for index, name in enumerate(names):
            if len([a for a in attempts if a.path is not None]) >= MAX_ATTEMPTS or (check is None and attempts):
                break
            if name == "exclude":
                base = _best(attempts)
                if base is None:
                    continue
                if ranked is None:
                    ranked = _ranking(pre, rank_feeds or calibration, tmp)
                k = max(1, math.ceil(EXCLUDE_FRACTION * len(ranked)))
                recipe = base.recipe.excluding([n for n, _ in ranked[:k]])
            else:
                recipe = replace(RECIPES[name], per_channel=options.per_channel)
            problem = _calibration_problem(calibration) if recipe.mode == QuantMode.STATIC else None
            if problem:
                if index == 0:
                    raise DataError(problem)
                attempts.append(_Attempt(recipe, None, record={"recipe": recipe.name, "skipped": problem.split(";")[0]}))
                continue
            attempts.append(_run(recipe, pre, tmp / f"int8_{index}.onnx", calibration, check))
            last = attempts[-1]
            if last.verdict is not None and last.verdict.passed:
                break
        chosen = _passing(attempts) or _best(attempts)
        if chosen is None:
            errors = [a.error for a in attempts if a.error]
            raise ConversionError(f"onnxruntime int8 quantization failed: {errors[0] if errors else 'no recipe applies'}")
        details = {**chosen.recipe.describe(), "graph_family": fam.value, "preprocessed": preprocessed}
        if calibration is not None and chosen.recipe.mode == QuantMode.STATIC:
            details["calibration_samples"] = len(next(iter(calibration.values())))
        if check is not None:
            details["attempts"] = [a.record for a in attempts]
            details["recipe_selection"] = ("first recipe meeting the bound" if chosen.verdict and chosen.verdict.passed
                                           else "no recipe met the bound; kept the closest")
        return Int8Result(onnx_module().load_model(str(chosen.path)), details)


def _preprocess(src: Path, tmp: Path) -> tuple[Path, bool]:
    from onnxruntime import quantization as q

    pre = tmp / "pre.onnx"
    try:
        # chdir: ORT's symbolic shape inference drops a temp file into the cwd when it gives up.
        with contextlib.chdir(tmp):
            q.shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        return pre, True
    except Exception:  # pre-processing is an optimisation; some graphs defeat its shape inference
        return src, False


def _ranking(pre: Path, feeds: dict[str, np.ndarray] | None, tmp: Path) -> list[tuple[str, float]]:
    if feeds is None:
        return []
    try:
        return rank_nodes(pre, feeds, tmp)
    except Exception:  # ranking is a remedy, not a requirement: no ranking, no exclusion attempt
        return []


def _run(recipe: Recipe, pre: Path, out: Path, calibration: dict[str, np.ndarray] | None, check: Check | None) -> _Attempt:
    if recipe.exclude == () and recipe.name.endswith("_sensitive"):
        return _Attempt(recipe, None, record={"recipe": recipe.name, "skipped": "no node ranking"})
    logging.disable(logging.WARNING)  # ORT's root-logger advice ("consider pre-processing"): we already tried
    try:
        onnx_recipes.apply(recipe, pre, out, calibration)
    except EdgeMLError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return _Attempt(recipe, None, error=reason, record={"recipe": recipe.name, "error": reason})
    finally:
        logging.disable(logging.NOTSET)
    attempt = _Attempt(recipe, out, record={"recipe": recipe.name})
    if check is not None:
        try:
            attempt.verdict = check(out)
            attempt.record.update(attempt.verdict.to_dict())
        except Exception as exc:  # the candidate does not even run: a failed attempt, not a crash
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            attempt.path, attempt.error = None, reason
            attempt.record["error"] = reason
    return attempt


def _passing(attempts: list[_Attempt]) -> _Attempt | None:
    return next((a for a in attempts if a.verdict is not None and a.verdict.passed), None)


def _best(attempts: list[_Attempt]) -> _Attempt | None:
    done = [a for a in attempts if a.path is not None]
    if not done:
        return None
    return max(done, key=lambda a: a.verdict.score if a.verdict is not None else 0.0)
