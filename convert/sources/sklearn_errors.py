"""skl2onnx failures turned into one clear error that names the estimator (never a raw skl2onnx message)."""

from __future__ import annotations

from typing import Any

from edgeml.errors import ConversionError, EdgeMLError, UnsupportedModelError

TESTED_ESTIMATORS = (
    "LogisticRegression, LinearRegression, Ridge, SVC, SVR, LinearSVC, DecisionTree*, RandomForest*, "
    "ExtraTrees*, GradientBoosting*, HistGradientBoosting*, MLPClassifier, MLPRegressor, KMeans, XGBoost and "
    "LightGBM estimators, and Pipelines of them with SimpleImputer, StandardScaler, OneHotEncoder in a ColumnTransformer"
)
_MISSING = ("MissingShapeCalculator", "MissingConverter")


def model_name(obj: Any, final: Any) -> str:
    steps = getattr(obj, "steps", None)
    if steps:
        return "Pipeline(" + ", ".join(type(s).__name__ for _, s in steps) + ")"
    return type(obj).__name__


def conversion_error(exc: Exception, name: str) -> EdgeMLError:
    if isinstance(exc, EdgeMLError):
        return exc
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if type(exc).__name__ in _MISSING or "Unable to find a shape calculator" in text:
        culprit = _culprit(text) or name
        return UnsupportedModelError(f"skl2onnx cannot convert {culprit} (in {name}); supported: {TESTED_ESTIMATORS}")
    return ConversionError(f"skl2onnx failed on {name}: {text}")


def _culprit(text: str) -> str | None:
    """The estimator class skl2onnx names in 'Unable to find a shape calculator for type '<class ...X'>'."""
    marker = "<class '"
    start = text.find(marker)
    if start < 0:
        return None
    return text[start + len(marker):].split("'")[0].rsplit(".", 1)[-1]
