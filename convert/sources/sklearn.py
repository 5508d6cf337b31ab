"""scikit-learn sources: a joblib/pickle file of an estimator or a Pipeline, exported with skl2onnx.

Pickles execute code when loaded: convert only files you trust. Pipelines with a ColumnTransformer
become one graph input per raw column (strings stay strings), so the preprocessing travels inside the
ONNX graph and devices feed raw features.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import SourceError, UnsupportedModelError, require
from edgeml.hashing import sha256_file
from edgeml.schema import TensorSpec

from ..onnx_utils import schema_from_onnx
from ..options import ConvertOptions, Task
from .base import SourceModel
from .boosters import register_boosters
from .sklearn_compat import patch_skl2onnx
from .sklearn_imputers import DEVICE_MISSING, for_export, missing_string_columns
from .sklearn_errors import TESTED_ESTIMATORS, conversion_error, model_name
from .sklearn_precision import compile_at_source_precision, feature_dtype, loadable

SUFFIXES = (".joblib", ".pkl", ".pickle", ".sav")
# ONNX outputs from skl2onnx -> how to compute the same thing with the estimator.
_ENCODERS = ("OneHotEncoder", "OrdinalEncoder")


class SklearnLoader:
    name = "sklearn"
    description = "scikit-learn estimator or Pipeline saved with joblib/pickle (.joblib/.pkl; trusted files only)"

    def matches(self, source: str) -> bool:
        return source.lower().endswith(SUFFIXES)

    def load(self, source: str, options: ConvertOptions) -> SourceModel:
        sklearn = require("sklearn", "convert", "scikit-learn")
        joblib = require("joblib", "convert")
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"source {path} not found")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = joblib.load(path)
        except Exception as exc:
            raise SourceError(f"cannot unpickle {path}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
        if not hasattr(model, "get_params") or not (hasattr(model, "predict") or hasattr(model, "transform")):
            raise UnsupportedModelError(f"{path} holds a {type(model).__name__}, not a scikit-learn estimator; supported: {TESTED_ESTIMATORS}")
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        task = options.task or _task_of(sklearn, final)
        columns, specs = _input_specs(model, options)
        onnx_model, arithmetic = _to_onnx(model, final, specs, options.opset)
        schema = schema_from_onnx(onnx_model)
        for spec, given in zip(schema.inputs, specs):
            spec.feature_names = given.feature_names
        out_names = [o.name for o in schema.outputs]
        reference, comparable = _reference(model, final, columns, schema, out_names)
        labels = [_plain(c) for c in final.classes_] if hasattr(final, "classes_") else options.labels
        return SourceModel(
            kind=self.name, framework="scikit-learn", framework_version=sklearn.__version__, path=path,
            sha256=sha256_file(path), onnx_model=onnx_model, schema=schema, task=task, reference=reference,
            labels=labels, label_output="label" if "label" in out_names else None,
            score_output="probabilities" if "probabilities" in comparable else None,
            comparable_outputs=comparable,
            details={"estimator": type(final).__name__, "pipeline": [type(s[1]).__name__ for s in getattr(model, "steps", [])] or None,
                     "graph_arithmetic": arithmetic},
            native=model,
        )


def _task_of(sklearn: Any, est: Any) -> Task:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(est):
        return Task.CLASSIFICATION
    if is_regressor(est):
        return Task.REGRESSION
    if hasattr(est, "cluster_centers_") or "Cluster" in "".join(c.__name__ for c in type(est).__mro__):
        return Task.CLUSTERING
    return Task.OTHER


def _column_transformer(model: Any) -> Any | None:
    first = model.steps[0][1] if hasattr(model, "steps") else model
    return first if type(first).__name__ == "ColumnTransformer" else None


def _string_columns(ct: Any) -> set[str]:
    """Columns that feed an encoder whose learned categories are strings."""
    out: set[str] = set()
    for _, trans, cols in ct.transformers_:
        if isinstance(trans, str):
            continue
        steps = [s[1] for s in trans.steps] if hasattr(trans, "steps") else [trans]
        for step in steps:
            if type(step).__name__ in _ENCODERS:
                for col, cats in zip(cols, step.categories_):
                    if np.asarray(cats).dtype.kind in "OUS":
                        out.add(col)
    return out


def _input_specs(model: Any, options: ConvertOptions) -> tuple[list[str] | None, list[TensorSpec]]:
    """Return (raw column names when fed per column, input specs in graph order)."""
    names = [str(c) for c in getattr(model, "feature_names_in_", [])]
    ct = _column_transformer(model)
    overrides = {s.name: s for s in options.inputs}
    if ct is not None and names:
        strings = _string_columns(ct)
        specs = [TensorSpec(c, "string" if c in strings else "float32", [None, 1], [c]) for c in names]
        specs = [_override(s, overrides) for s in specs]
        return names, specs
    n = getattr(model, "n_features_in_", None)
    if n is None:
        raise UnsupportedModelError(f"{type(model).__name__} is not fitted (no n_features_in_); fit it before converting")
    spec = TensorSpec("input", "float32", [None, int(n)], names or None)
    return None, [_override(spec, overrides)]


def _override(spec: TensorSpec, overrides: dict[str, TensorSpec]) -> TensorSpec:
    o = overrides.get(spec.name)
    return TensorSpec(spec.name, o.dtype, o.shape, spec.feature_names) if o else spec


def _to_onnx(model: Any, final: Any, specs: list[TensorSpec], opset: int) -> tuple[Any, str]:
    """The ONNX graph and the arithmetic it computes in (sklearn_precision)."""
    require("skl2onnx", "convert")
    patch_skl2onnx()
    register_boosters()

    model = for_export(model)  # string imputers take the device's "" as missing (sklearn_imputers)
    final = model.steps[-1][1] if hasattr(model, "steps") else model

    def convert(obj: Any, inputs: list[tuple[str, str, list]]) -> Any:
        return _skl2onnx(obj, final, inputs, opset)

    if feature_dtype(final) is not None:
        try:
            return loadable(compile_at_source_precision(model, final, specs, convert)), "scikit-learn's (float64 preprocessing)"
        except Exception:  # a step without a float64 converter/kernel (e.g. TF-IDF): the float32 graph,
            pass  # which validation then judges like any other
    return convert(model, [(s.name, s.dtype, s.shape) for s in specs]), "float32"


def _skl2onnx(obj: Any, final: Any, inputs: list[tuple[str, str, list]], opset: int) -> Any:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType, StringTensorType

    types = {"float32": FloatTensorType, "float64": DoubleTensorType, "int64": Int64TensorType, "string": StringTensorType}
    initial = [(name, types[dtype](shape)) for name, dtype, shape in inputs]
    target = {"": opset, "ai.onnx.ml": 3}
    holds_final = obj is final or any(step is final for _, step in getattr(obj, "steps", []))
    no_zipmap = {id(final): {"zipmap": False}} if holds_final else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                return to_onnx(obj, initial_types=initial, options=no_zipmap, target_opset=target)
            except NameError:  # the estimator has no zipmap option (regressors, SVMs without probabilities)
                return to_onnx(obj, initial_types=initial, target_opset=target)
        except Exception as exc:
            raise conversion_error(exc, model_name(obj, final)) from None


def _reference(model: Any, final: Any, columns: list[str] | None, schema: Any, out_names: list[str]):
    """The estimator's own predictions for each ONNX output it has a counterpart for."""
    methods: dict[str, Any] = {}
    if "label" in out_names:
        methods["label"] = lambda X: np.asarray(model.predict(X))
    if "probabilities" in out_names:
        if hasattr(final, "predict_proba") and getattr(final, "probability", True):
            methods["probabilities"] = lambda X: np.asarray(model.predict_proba(X), dtype=np.float32)
        elif type(final).__name__ == "LinearSVC" or (hasattr(final, "decision_function") and not hasattr(final, "probability")):
            methods["probabilities"] = lambda X: _as_2d(model.decision_function(X))
    if "variable" in out_names:
        methods["variable"] = lambda X: np.asarray(model.predict(X), dtype=np.float32).reshape(-1, 1)
    if "scores" in out_names and hasattr(final, "cluster_centers_"):
        methods["scores"] = lambda X: np.asarray(model.transform(X), dtype=np.float32)
    input_names = [s.name for s in schema.inputs]
    # The reference is the estimator on the dtype it was trained on: float64, holding the float32 values
    # the device gets (widened exactly). The graph reproduces scikit-learn's float64 arithmetic where
    # it matters (sklearn_precision), so fp32 artifacts pass the default tolerances.
    nan_columns = missing_string_columns(model)
    # Estimators fitted on float32 that refuse float64 (KMeans keeps its training dtype) get float32.
    fitted = getattr(final, "cluster_centers_", None)
    dtype = np.float32 if fitted is not None and fitted.dtype == np.float32 else np.float64

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        X = _frame(feeds, input_names, columns, nan_columns, dtype) if columns else feeds[input_names[0]].astype(np.float32).astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {name: fn(X) for name, fn in methods.items()}

    return run, list(methods)


def _frame(feeds: dict[str, np.ndarray], input_names: list[str], columns: list[str], nan_columns: set[str],
           dtype: Any = np.float64) -> Any:
    import pandas as pd

    data = {}
    for name, col in zip(input_names, columns):
        values = np.asarray(feeds[name]).reshape(-1)
        if values.dtype.kind in "OUS":
            values = values.astype(object)
            if col in nan_columns:
                values[values == DEVICE_MISSING] = np.nan
            data[col] = values
        else:
            data[col] = values.astype(np.float32).astype(dtype)
    return pd.DataFrame(data, columns=columns)


def _as_2d(a: Any) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return a.reshape(-1, 1) if a.ndim == 1 else a


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def sanitize(name: str) -> str:
    return re.sub(r"\W", "_", name)


LOADER = SklearnLoader()
