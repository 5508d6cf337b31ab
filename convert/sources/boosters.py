"""XGBoost and LightGBM: scikit-learn-API estimators (alone, in Pipelines, in joblib files) and native
booster files, converted with onnxmltools' converters.

- Estimators: `register_boosters()` registers onnxmltools' shape calculators and converters with skl2onnx
  (its documented `update_registered_converter` recipe), so the scikit-learn loader converts an
  XGBClassifier/LGBMRegressor... exactly like a scikit-learn estimator, preprocessing included.
- Native files: XGBoost `.json` / `.ubj` / `.model` (Booster.save_model) and LightGBM `.txt`
  (Booster.save_model). The booster gives the number of features; the graph has one float32 input named
  `input` of shape [batch, n_features] (feature names from the booster when it has real ones), and the
  outputs are `label` + `probabilities` for classification objectives, `variable` for regression.
  The reference is the booster itself on the float32 values widened to float64.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import ConversionError, SourceError, UnsupportedModelError, require
from edgeml.hashing import sha256_file
from edgeml.schema import TensorSpec

from ..onnx_utils import schema_from_onnx, set_batch_dynamic
from ..options import ConvertOptions, Task
from .base import SourceModel
from .sklearn_compat import TREE_OPS

ONNXMLTOOLS_MAX_OPSET = 15  # onnxmltools 1.16 refuses a higher default-domain opset
_registered = False


def register_boosters() -> None:
    """Teach skl2onnx XGBoost and LightGBM estimators (no-op for a library that is not installed)."""
    global _registered
    if _registered:
        return
    _registered = True
    import importlib.util

    if importlib.util.find_spec("onnxmltools") is None:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (calculate_linear_classifier_output_shapes,
                                                  calculate_linear_regressor_output_shapes)

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if importlib.util.find_spec("xgboost") is not None:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                    convert_xgboost, options=classifier_options)
        update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost)
    if importlib.util.find_spec("lightgbm") is not None:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                    convert_lightgbm, options=classifier_options)
        update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm)


class _Native:
    """What differs between XGBoost and LightGBM booster files."""

    library: str
    suffixes: tuple[str, ...]
    feature_dtype: str  # what the library compares features in (sklearn_precision.FEATURE_DTYPE)

    def sniff(self, path: Path) -> bool: ...
    def load(self, path: Path) -> Any: ...
    def n_features(self, booster: Any) -> int: ...
    def feature_names(self, booster: Any) -> list[str] | None: ...
    def objective(self, booster: Any) -> str: ...
    def n_classes(self, booster: Any) -> int: ...
    def to_onnx(self, booster: Any, initial: list) -> Any: ...
    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray: ...


class _XGBoost(_Native):
    library, suffixes, feature_dtype = "xgboost", (".json", ".ubj", ".model"), "float32"

    def sniff(self, path: Path) -> bool:
        if path.suffix.lower() != ".json":
            return True
        with open(path, "rb") as f:
            head = f.read(4096)
        return b'"learner"' in head

    def load(self, path: Path) -> Any:
        xgb = require("xgboost", "convert")
        booster = xgb.Booster()
        booster.load_model(str(path))
        return booster

    def n_features(self, booster: Any) -> int:
        return int(booster.num_features())

    def feature_names(self, booster: Any) -> list[str] | None:
        return list(booster.feature_names) if booster.feature_names else None

    def _config(self, booster: Any) -> dict:
        return json.loads(booster.save_config())["learner"]

    def objective(self, booster: Any) -> str:
        return str(self._config(booster)["objective"]["name"])

    def n_classes(self, booster: Any) -> int:
        return max(2, int(self._config(booster)["learner_model_param"].get("num_class", "0") or 0))

    def to_onnx(self, booster: Any, initial: list) -> Any:
        import onnxmltools

        return onnxmltools.convert_xgboost(booster, initial_types=initial, target_opset=ONNXMLTOOLS_MAX_OPSET)

    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        return np.asarray(booster.predict(xgb.DMatrix(x)))


class _LightGBM(_Native):
    library, suffixes, feature_dtype = "lightgbm", (".txt",), "float64"

    def sniff(self, path: Path) -> bool:
        with open(path, "rb") as f:
            return f.read(5) == b"tree\n"

    def load(self, path: Path) -> Any:
        lgb = require("lightgbm", "convert")
        return lgb.Booster(model_file=str(path))

    def n_features(self, booster: Any) -> int:
        return int(booster.num_feature())

    def feature_names(self, booster: Any) -> list[str] | None:
        names = list(booster.feature_name())
        return None if names == [f"Column_{i}" for i in range(len(names))] else names

    def objective(self, booster: Any) -> str:
        return str(booster.dump_model(num_iteration=0)["objective"]).split()[0]

    def n_classes(self, booster: Any) -> int:
        return max(2, int(booster.dump_model(num_iteration=0).get("num_class", 1)))

    def to_onnx(self, booster: Any, initial: list) -> Any:
        import onnxmltools

        return onnxmltools.convert_lightgbm(booster, initial_types=initial, zipmap=False, target_opset=ONNXMLTOOLS_MAX_OPSET)

    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(x))


NATIVE: dict[str, _Native] = {"xgboost": _XGBoost(), "lightgbm": _LightGBM()}
# Objective prefixes -> task (XGBoost "binary:logistic", "multi:softprob", "reg:squarederror"; LightGBM
# "binary", "multiclass", "regression", ...). Anything else (ranking, survival...) is refused by name.
OBJECTIVE_TASKS: dict[str, Task] = {
    "binary": Task.CLASSIFICATION, "multi": Task.CLASSIFICATION, "multiclass": Task.CLASSIFICATION,
    "multiclassova": Task.CLASSIFICATION, "reg": Task.REGRESSION, "regression": Task.REGRESSION,
    "regression_l1": Task.REGRESSION, "huber": Task.REGRESSION, "fair": Task.REGRESSION,
    "poisson": Task.REGRESSION, "quantile": Task.REGRESSION, "mape": Task.REGRESSION, "gamma": Task.REGRESSION,
    "tweedie": Task.REGRESSION, "count": Task.REGRESSION,
}
# Classifiers whose booster predicts probabilities (multi:softmax predicts labels only: refused).
_CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob", "binary", "multiclass", "multiclassova")


def _native_for(path: Path) -> _Native | None:
    for native in NATIVE.values():
        if path.suffix.lower() in native.suffixes and path.is_file() and native.sniff(path):
            return native
    return None


class BoosterLoader:
    name = "booster"
    description = "XGBoost (.json/.ubj/.model) or LightGBM (.txt) booster files saved with Booster.save_model"

    def matches(self, source: str) -> bool:
        path = Path(source)
        return path.suffix.lower() in {s for n in NATIVE.values() for s in n.suffixes} and _native_for(path) is not None

    def load(self, source: str, options: ConvertOptions) -> SourceModel:
        path = Path(source)
        native = _native_for(path)
        if native is None:
            raise SourceError(f"{path} is not an XGBoost or LightGBM booster file")
        require("onnxmltools", "convert")
        try:
            booster = native.load(path)
        except Exception as exc:
            raise SourceError(f"{path} is not a readable {native.library} booster: {str(exc).splitlines()[0][:200]}") from None
        objective = native.objective(booster)
        task = OBJECTIVE_TASKS.get(objective.split(":")[0])
        if task is None or (task == Task.CLASSIFICATION and objective not in _CLASSIFIER_OBJECTIVES):
            raise UnsupportedModelError(f"{native.library} objective {objective!r} is not supported; convert classification "
                                        f"({', '.join(_CLASSIFIER_OBJECTIVES)}) or regression boosters")
        n = native.n_features(booster)
        names = native.feature_names(booster)
        onnx_model = self._onnx(native, booster, n)
        schema = schema_from_onnx(onnx_model)
        schema.inputs[0].feature_names = names
        classes = native.n_classes(booster) if task == Task.CLASSIFICATION else 0
        out_names = [o.name for o in schema.outputs]
        reference = _reference(native, booster, classes, out_names)
        return SourceModel(
            kind=self.name, framework=native.library, framework_version=_version(native.library), path=path,
            sha256=sha256_file(path), onnx_model=onnx_model, schema=schema, task=options.task or task,
            reference=reference, labels=options.labels or (list(range(classes)) if classes else None),
            label_output="label" if "label" in out_names else None,
            score_output="probabilities" if "probabilities" in out_names else None,
            comparable_outputs=[o for o in out_names if o in ("label", "probabilities", "variable")],
            details={"estimator": f"{native.library} Booster", "objective": objective, "n_features": n},
            native=booster,
        )

    def _onnx(self, native: _Native, booster: Any, n: int) -> Any:
        """float32 in and out; a float64 library (LightGBM) compares in float64 with float64 thresholds."""
        from contextlib import nullcontext

        import onnx
        from onnxmltools.convert.common.data_types import FloatTensorType

        from .sklearn_compat import float64_thresholds
        from .sklearn_precision import float32_io, float_tree_outputs

        double = native.feature_dtype == "float64"
        with warnings.catch_warnings(), (float64_thresholds() if double else nullcontext()):
            warnings.simplefilter("ignore")
            try:
                model = native.to_onnx(booster, [("input", FloatTensorType([None, n]))])
            except Exception as exc:
                raise ConversionError(f"onnxmltools cannot convert this {native.library} booster: {str(exc).splitlines()[0][:300]}") from None
        if double and _feeds_trees_only(model, "input"):
            # onnxmltools' booster shape calculators take float32 only: the input becomes double afterwards.
            model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
            float_tree_outputs(onnx, model)
            model = float32_io(onnx, model)
        set_batch_dynamic(model)
        return model


def _feeds_trees_only(model: Any, name: str) -> bool:
    consumers = [n for n in model.graph.node if name in n.input]
    return bool(consumers) and all(n.op_type in TREE_OPS for n in consumers)


def _reference(native: _Native, booster: Any, classes: int, out_names: list[str]):
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.asarray(feeds["input"]).astype(np.float32).astype(np.float64)
        raw = native.predict(booster, x)
        if not classes:
            return {"variable": raw.astype(np.float32).reshape(-1, 1)}
        proba = np.stack([1 - raw, raw], axis=1) if raw.ndim == 1 else raw
        out = {"probabilities": proba.astype(np.float32), "label": proba.argmax(axis=1).astype(np.int64)}
        return {k: v for k, v in out.items() if k in out_names}

    return run


def _version(library: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return importlib.metadata.version(f"{library}-cpu") if library == "xgboost" else "unknown"


LOADER = BoosterLoader()
