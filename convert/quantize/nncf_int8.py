"""int8 OpenVINO IR with NNCF: a recipe per graph family, NNCF's own remedies until the bound is met.

Recipes, in the order tried (at most one quantization each):
  transformer graphs: `nncf_ptq_transformer` (nncf.quantize with model_type=ModelType.TRANSFORMER, which
      keeps Softmax/LayerNorm/residual paths in float and smooths activations: the MiniLM finding, mean
      cosine 0.15 without it, 0.997 with it);
  CNN/MLP graphs: `nncf_ptq` (the default preset), then `nncf_ptq_mixed` (MIXED preset, asymmetric
      activations, full bias correction);
  then, for every family: `nncf_accuracy_control` (nncf.quantize_with_accuracy_control reverting the
      layers that cost most until the output similarity to the float model drops by at most
      ACCURACY_CONTROL_DROP), and `nncf_weights_only` (int8 weights, float activations: mixed precision).
With --max-accuracy-drop and labelled validation data, accuracy control on the labels comes first.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgeml.errors import ConversionError, DataError, EdgeMLError, UsageError, require

from ..quiet import silenced
from ..validate import TaskInfo, predictions
from .bound_check import Verdict, similarity
from .calibration import checked_samples, one_by_one
from .graph_family import GraphFamily

ACCURACY_CONTROL_DROP = 0.01  # mean output cosine the accuracy-controlled model may lose against float
MAX_SUBSET = 300
ACCURACY_CONTROL_STEPS = 3  # layer groups accuracy control may revert to float (each costs one validation run)

Fresh = Callable[[], Any]  # a fresh ov.Model (NNCF modifies the model it is given)
Check = Callable[[Any], Verdict]  # a quantized ov.Model -> does it meet the bound?


@dataclass(frozen=True)
class NNCFRecipe:
    name: str
    run: Callable[[Any, Any, "_Inputs"], Any]  # (nncf, model, inputs) -> quantized model
    details: dict[str, Any]


@dataclass
class _Inputs:
    calibration: Any  # nncf.Dataset
    samples: int
    validation: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]  # (feeds, float outputs) per sample


def _ptq(**kwargs: Any) -> Callable[[Any, Any, _Inputs], Any]:
    def run(nncf: Any, model: Any, inputs: _Inputs) -> Any:
        extra = {k: (v(nncf) if callable(v) else v) for k, v in kwargs.items()}
        return nncf.quantize(model, inputs.calibration, subset_size=min(inputs.samples, MAX_SUBSET), **extra)
    return run


def _accuracy_control(transformer: bool) -> Callable[[Any, Any, _Inputs], Any]:
    def run(nncf: Any, model: Any, inputs: _Inputs) -> Any:
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        extra: dict[str, Any] = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
        # bounded: at most ACCURACY_CONTROL_STEPS layer groups reverted, ranked on a subset
        extra["advanced_accuracy_restorer_parameters"] = AdvancedAccuracyRestorerParameters(
            max_num_iterations=ACCURACY_CONTROL_STEPS, ranking_subset_size=min(len(inputs.validation), 100), num_ranking_workers=1)
        return nncf.quantize_with_accuracy_control(
            model, inputs.calibration, nncf.Dataset(inputs.validation, _feeds_of), validation_fn=_similarity_fn,
            max_drop=ACCURACY_CONTROL_DROP, drop_type=nncf.DropType.ABSOLUTE,
            subset_size=min(inputs.samples, MAX_SUBSET), **extra)
    return run


def _weights_only(nncf: Any, model: Any, inputs: _Inputs) -> Any:
    return nncf.compress_weights(model)


_INT8 = {"weights": "int8", "activations": "int8"}
RECIPES: dict[str, NNCFRecipe] = {
    "nncf_ptq": NNCFRecipe("nncf_ptq", _ptq(), {"quantization": "nncf_ptq", **_INT8}),
    "nncf_ptq_transformer": NNCFRecipe("nncf_ptq_transformer", _ptq(model_type=lambda n: n.ModelType.TRANSFORMER),
                                       {"quantization": "nncf_ptq", "model_type": "transformer", **_INT8}),
    "nncf_ptq_mixed": NNCFRecipe("nncf_ptq_mixed", _ptq(preset=lambda n: n.QuantizationPreset.MIXED, fast_bias_correction=False),
                                 {"quantization": "nncf_ptq", "preset": "mixed", "bias_correction": "full", **_INT8}),
    "nncf_accuracy_control": NNCFRecipe("nncf_accuracy_control", _accuracy_control(False),
                                        {"quantization": "nncf_accuracy_control", "max_similarity_drop": ACCURACY_CONTROL_DROP, **_INT8}),
    "nncf_accuracy_control_transformer": NNCFRecipe(
        "nncf_accuracy_control_transformer", _accuracy_control(True),
        {"quantization": "nncf_accuracy_control", "model_type": "transformer", "max_similarity_drop": ACCURACY_CONTROL_DROP, **_INT8}),
    "nncf_weights_only": NNCFRecipe("nncf_weights_only", _weights_only,
                                    {"quantization": "weights_only", "weights": "int8", "activations": "float32"}),
}
PLANS: dict[GraphFamily, tuple[str, ...]] = {
    GraphFamily.TRANSFORMER: ("nncf_ptq_transformer", "nncf_accuracy_control_transformer", "nncf_weights_only"),
    GraphFamily.CNN: ("nncf_ptq", "nncf_ptq_mixed", "nncf_accuracy_control", "nncf_weights_only"),
    GraphFamily.MLP: ("nncf_ptq", "nncf_ptq_mixed", "nncf_accuracy_control", "nncf_weights_only"),
}


def _feeds_of(item: tuple[dict[str, np.ndarray], Any]) -> dict[str, np.ndarray]:
    """NNCF's transform_fn for (feeds, expected) validation items: what the model is run on."""
    return item[0]


def _similarity_fn(compiled: Any, items: Any) -> float:
    """NNCF validation_fn: mean output cosine of the candidate against the float model's outputs."""
    scores = []
    for feeds, reference in items:
        result = compiled(feeds)
        outputs = {p.get_any_name(): result[p] for p in compiled.outputs}
        scores.append(similarity(reference, outputs))
    return float(np.mean(scores)) if scores else 0.0


def _nncf() -> Any:
    with silenced():  # nncf imports the frameworks it finds (tensorflow prints from C++ at import)
        nncf = require("nncf", "convert")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    return nncf


def quantize(fresh: Fresh, ctx: Any, fam: GraphFamily, check: Check | None) -> tuple[Any, dict[str, Any]]:
    """int8 of a fresh model per attempt; the first recipe meeting `check`, else the closest one."""
    nncf = _nncf()
    drop = ctx.options.max_accuracy_drop
    if ctx.calibration is None:
        if drop is not None:
            raise DataError("--max-accuracy-drop needs --calibration data for NNCF quantization")
        with silenced():
            return nncf.compress_weights(fresh()), {"quantization": "weights_only", "weights": "int8", "activations": "float32",
                                                    "note": "pass --calibration for full int8 (NNCF post-training quantization)"}
    n = checked_samples(ctx.calibration.feeds, "openvino int8 (NNCF post-training quantization)")
    if drop is not None:  # the user's accuracy bound on labels replaces the similarity recipes
        return _labelled_accuracy_control(nncf, fresh(), ctx, n, drop)
    inputs = _Inputs(nncf.Dataset(one_by_one(ctx.calibration.feeds)), n, _validation_items(ctx) if check else [])
    plan = PLANS[fam] if check is not None else PLANS[fam][:1]
    attempts: list[dict[str, Any]] = []
    best: tuple[float, Any, NNCFRecipe] | None = None
    for name in plan:
        recipe = RECIPES[name]
        try:
            with silenced():
                model = recipe.run(nncf, fresh(), inputs)
        except EdgeMLError:
            raise
        except Exception as exc:
            attempts.append({"recipe": name, "error": _first_line(exc)})
            continue
        if check is None:
            return model, {"recipe": name, **recipe.details, "graph_family": fam.value, "calibration_samples": n}
        verdict = check(model)
        attempts.append({"recipe": name, **verdict.to_dict()})
        if best is None or verdict.score > best[0] or verdict.passed:
            best = (math.inf if verdict.passed else verdict.score, model, recipe)
        if verdict.passed:
            break
    if best is None:
        raise ConversionError(f"NNCF int8 quantization failed: {attempts[0].get('error', 'no recipe applies') if attempts else 'no recipe'}")
    _, model, recipe = best
    details = {"recipe": recipe.name, **recipe.details, "graph_family": fam.value, "calibration_samples": n,
               "attempts": attempts,
               "recipe_selection": "first recipe meeting the bound" if attempts[-1].get("passed") else "no recipe met the bound; kept the closest"}
    return model, details


def _validation_items(ctx: Any) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    feeds = one_by_one(ctx.validation.feeds)
    reference = ctx.cache["validation_reference"]
    return [(f, {k: np.asarray(v)[i:i + 1] for k, v in reference.items()}) for i, f in enumerate(feeds)]


def _labelled_accuracy_control(nncf: Any, model: Any, ctx: Any, n: int, drop: float) -> tuple[Any, dict[str, Any]]:
    validation = _labelled_validation(ctx)
    try:
        with silenced():
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(one_by_one(ctx.calibration.feeds)), nncf.Dataset(validation, _feeds_of),
                validation_fn=_accuracy_fn(ctx.source), max_drop=drop, drop_type=nncf.DropType.ABSOLUTE,
                subset_size=min(n, MAX_SUBSET),
            )
    except (DataError, UsageError):
        raise
    except Exception as exc:
        raise ConversionError(f"NNCF int8 quantization failed: {_first_line(exc)}") from None
    return quantized, {"recipe": "nncf_accuracy_control_labels", "quantization": "nncf_accuracy_control", **_INT8,
                       "calibration_samples": n, "max_accuracy_drop": drop}


def _labelled_validation(ctx: Any) -> list[tuple[dict[str, np.ndarray], Any]]:
    data = ctx.validation
    if data is None or data.labels is None:
        raise DataError("--max-accuracy-drop needs labels in the validation data (a label/target key or column, or --target)")
    if ctx.source.score_output is None and ctx.source.label_output is None:
        raise UsageError("--max-accuracy-drop needs a classifier (the model's task is not classification)")
    return list(zip(one_by_one(data.feeds), data.labels))


def _accuracy_fn(source: Any) -> Callable[[Any, Any], float]:
    info = TaskInfo(source.task, source.label_output, source.score_output, source.labels)

    def accuracy(compiled: Any, items: Any) -> float:
        hits, total = 0, 0
        for feeds, label in items:
            result = compiled(feeds)
            outputs = {p.get_any_name(): result[p] for p in compiled.outputs}
            pred = predictions(outputs, info)
            if pred is None:
                continue
            value = pred[0]
            if info.labels and np.asarray(label).dtype.kind in "OUS" and np.asarray(value).dtype.kind in "iu":
                value = info.labels[int(value)]
            hits += int(str(value) == str(np.asarray(label).reshape(-1)[0] if np.ndim(label) else label))
            total += 1
        return hits / max(total, 1)

    return accuracy


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
