"""scikit-learn sources: estimators of every family, and Pipelines whose preprocessing travels in the graph."""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pytest

from conftest import convert_or_fail
from edgeml.bundle import read_manifest


def _iris_like():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


def _estimators():
    from sklearn.cluster import KMeans
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    return {
        "logistic_regression": (LogisticRegression(max_iter=500), "classification"),
        "svc": (SVC(), "classification"),
        "svc_probability": (SVC(probability=True, random_state=0), "classification"),
        "linear_svc": (LinearSVC(), "classification"),
        "decision_tree": (DecisionTreeClassifier(random_state=0), "classification"),
        "random_forest": (RandomForestClassifier(20, random_state=0), "classification"),
        "hist_gradient_boosting": (HistGradientBoostingClassifier(max_iter=20), "classification"),
        "mlp": (MLPClassifier((16,), max_iter=400, random_state=0), "classification"),
        "kmeans": (KMeans(3, n_init=2, random_state=0), "clustering"),
        "ridge": (Ridge(), "regression"),
        "random_forest_regressor": (RandomForestRegressor(10, random_state=0), "regression"),
    }


@pytest.mark.parametrize("name", list(_estimators()))
def test_estimator_converts_and_matches_the_source(name, run_cli, tmp_path):
    est, task = _estimators()[name]
    X, y = _iris_like()
    target = X[:, 0] if task == "regression" else y
    features = X[:, 1:] if task == "regression" else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(features, target) if task != "clustering" else est.fit(features)
    joblib.dump(est, tmp_path / "m.joblib")
    np.savez(tmp_path / "val.npz", input=features, label=target)
    bundle = convert_or_fail(run_cli, tmp_path / "m.joblib", "--out", tmp_path / "b", "--name", name, "--version", "1",
                             "--validation", tmp_path / "val.npz")
    m = read_manifest(bundle)
    v = m.artifact("onnx", "fp32").validation
    assert m.task == task and v["passed"], v
    assert m.source["estimator"] == type(est).__name__
    if task == "classification":
        assert v["top1_agreement"] == 1.0 and m.labels == [0, 1, 2]
        assert abs(v["metric_delta"]) < 1e-9
    if task == "regression":
        assert v["max_abs_error"] < 1e-3 and v["metric"] == "r2"
    compared = [o["name"] for o in v["outputs"] if o["compared"]]
    assert compared, "at least one output is compared with the estimator"


def test_pipeline_with_string_columns_converts_at_every_precision(signed_tabular_bundle, tabular):
    m = read_manifest(signed_tabular_bundle)
    assert [i.feature_names for i in m.inputs] == [["age"], ["income level"], ["city"]]
    assert [i.dtype for i in m.inputs] == ["float32", "float32", "string"]
    assert {a.precision for a in m.artifacts} == {"fp32", "fp16", "int8"}
    assert all(a.validation["passed"] for a in m.artifacts)
    assert m.artifact("onnx", "int8").details["quantization"] == "dynamic"
    assert m.artifact("onnx", "fp32").validation["max_abs_error"] < 1e-4
    features = {f["feature"]: f for f in m.reference["features"]}
    assert features["city"]["kind"] == "categorical" and set(features["city"]["categories"]) == {"paris", "oslo", "rome"}
    assert features["age"]["kind"] == "numeric" and len(features["age"]["counts"]) == len(features["age"]["edges"]) + 1


def test_pipeline_artifact_takes_raw_features_with_missing_values(signed_tabular_bundle):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(signed_tabular_bundle / "artifacts" / "model.fp32.onnx"))
    label, proba = sess.run(None, {
        "age": np.array([[np.nan], [30.0]], dtype=np.float32),
        "income_level": np.array([[7.0], [1.0]], dtype=np.float32),
        "city": np.array([["rome"], ["unknown-city"]]),
    })
    assert label.shape == (2,) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_kmeans_fitted_on_float64_converts(run_cli, tmp_path):
    from sklearn.cluster import KMeans

    X = np.random.default_rng(0).normal(size=(200, 3))  # float64
    joblib.dump(KMeans(4, n_init=2, random_state=0).fit(X), tmp_path / "km.joblib")
    np.savez(tmp_path / "val.npz", input=X)
    bundle = convert_or_fail(run_cli, tmp_path / "km.joblib", "--out", tmp_path / "b", "--name", "km", "--version", "1",
                             "--validation", tmp_path / "val.npz")
    v = read_manifest(bundle).artifacts[0].validation
    assert v["passed"] and v["top1_agreement"] >= 0.99


def test_tree_ensemble_int8_is_refused_before_any_work(run_cli, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    X, y = _iris_like()
    joblib.dump(RandomForestClassifier(5, random_state=0).fit(X, y), tmp_path / "rf.joblib")
    result = run_cli("convert", tmp_path / "rf.joblib", "--out", tmp_path / "b", "--name", "rf", "--version", "1",
                     "--precision", "fp32,int8")
    assert result.exit_code != 0
    assert len(result.error_lines) == 1 and "onnx/int8" in result.error_lines[0] and "TreeEnsembleClassifier" in result.error_lines[0]
    assert list(tmp_path.iterdir()) == [tmp_path / "rf.joblib"]


def test_csv_calibration_feeds_numeric_only_estimators_with_feature_names(run_cli, tmp_path):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    X, y = _iris_like()
    frame = pd.DataFrame(X, columns=["sepal length", "sepal width", "petal length", "petal width"])
    joblib.dump(LogisticRegression(max_iter=500).fit(frame, y), tmp_path / "lr.joblib")
    frame.assign(species=y).to_csv(tmp_path / "iris.csv", index=False)
    bundle = convert_or_fail(run_cli, tmp_path / "lr.joblib", "--out", tmp_path / "b", "--name", "lr", "--version", "1",
                             "--calibration", tmp_path / "iris.csv", "--target", "species")
    m = read_manifest(bundle)
    assert m.inputs[0].feature_names == list(frame.columns) and m.inputs[0].shape == [None, 4]
    assert m.artifacts[0].validation["metric"] == "accuracy"  # labels came from --target
