"""Tabular models people train: tree ensembles, SVMs, linear models, XGBoost and LightGBM (estimators,
pipelines, joblib and native booster files) convert and pass against the float64 source model with the
default fp32 tolerances; precisions the exporters cannot offer are refused up front."""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pandas as pd
import pytest

from conftest import convert_or_fail
from edgeml.bundle import read_manifest


def _data(name: str):
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")(return_X_y=True)


def _models():
    import lightgbm
    import xgboost
    from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingClassifier, HistGradientBoostingClassifier,
                                  HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    return {  # name -> (estimator, bundled dataset); breast_cancer is where float32 HGB thresholds flipped splits
        "random_forest": (RandomForestClassifier(20, random_state=0), "breast_cancer"),
        "hist_gradient_boosting": (HistGradientBoostingClassifier(max_iter=20, random_state=0), "breast_cancer"),
        "gradient_boosting": (GradientBoostingClassifier(n_estimators=20, random_state=0), "wine"),
        "decision_tree": (DecisionTreeClassifier(max_depth=6, random_state=0), "breast_cancer"),
        "extra_trees_regressor": (ExtraTreesRegressor(10, max_depth=8, random_state=0), "diabetes"),
        "svc_probability": (SVC(probability=True, random_state=0), "iris"),
        "logistic_regression": (LogisticRegression(max_iter=3000), "wine"),
        "random_forest_regressor": (RandomForestRegressor(10, random_state=0), "diabetes"),
        "hist_gradient_boosting_regressor": (HistGradientBoostingRegressor(max_iter=20, random_state=0), "diabetes"),
        "xgboost": (xgboost.XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1), "breast_cancer"),
        "xgboost_regressor": (xgboost.XGBRegressor(n_estimators=15, max_depth=3, n_jobs=1), "diabetes"),
        "lightgbm": (lightgbm.LGBMClassifier(n_estimators=15, num_leaves=7, n_jobs=1, verbose=-1), "iris"),
        "lightgbm_regressor": (lightgbm.LGBMRegressor(n_estimators=15, num_leaves=7, n_jobs=1, verbose=-1), "diabetes"),
    }


def _convert(run_cli, path, tmp_path, validation, *extra):
    return read_manifest(convert_or_fail(run_cli, path, "--out", tmp_path / "b", "--name", "m", "--version", "1",
                                         "--validation", validation, *extra))


def _assert_passes(manifest, classification: bool):
    v = manifest.artifact("onnx", "fp32").validation
    assert v["passed"], v
    assert [o["name"] for o in v["outputs"] if o["compared"]], "the source model's outputs are compared"
    if classification:
        assert manifest.task == "classification" and v["top1_agreement"] == 1.0
        assert {o.name: o.dtype for o in manifest.outputs}["probabilities"] == "float32"
    else:
        assert manifest.task == "regression" and {o.name: o.dtype for o in manifest.outputs}["variable"] == "float32"


@pytest.mark.parametrize("pipeline", [False, True], ids=["estimator", "scaled_pipeline"])
@pytest.mark.parametrize("name", list(_models()))
def test_estimator_passes_at_fp32_against_float64_source(name, pipeline, run_cli, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    est, dataset = _models()[name]
    X, y = _data(dataset)  # float64, as trained; the device gets the float32 values
    model = make_pipeline(StandardScaler(), est) if pipeline else est
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    joblib.dump(model, tmp_path / "m.joblib")
    np.savez(tmp_path / "val.npz", input=X, label=y)
    m = _convert(run_cli, tmp_path / "m.joblib", tmp_path, tmp_path / "val.npz")
    _assert_passes(m, classification=dataset != "diabetes")
    assert m.source["estimator"] == type(est).__name__
    trees = not isinstance(est, (SVC, LogisticRegression))
    assert m.source["graph_arithmetic"] == ("scikit-learn's (float64 preprocessing)" if trees else "float32")


def _customers(n: int = 240):
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"age": rng.normal(40, 12, n).round(1), "monthly spend": rng.gamma(2, 30, n).round(2),
                       "plan": rng.choice(["basic", "plus", "pro"], n).astype(object)})
    df.loc[rng.random(n) < 0.15, "plan"] = np.nan  # missing strings
    df.loc[rng.random(n) < 0.1, "age"] = np.nan
    y = ((df["monthly spend"] < 40) & (df["plan"] == "basic")) | (df["age"] > 55)
    return df, y.astype(int)


@pytest.mark.parametrize("final", ["random_forest", "hist_gradient_boosting", "xgboost"])
def test_pipeline_with_string_imputer_and_one_hot_passes(final, run_cli, tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df, y = _customers()
    pre = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), ["age", "monthly spend"]),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="unknown")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), ["plan"]),
    ], sparse_threshold=0.0)
    est = _models()[final][0]
    model = Pipeline([("pre", pre), ("model", est)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(df, y)
    joblib.dump(model, tmp_path / "m.joblib")
    df.assign(label=y).to_csv(tmp_path / "val.csv", index=False)
    m = _convert(run_cli, tmp_path / "m.joblib", tmp_path, tmp_path / "val.csv")
    _assert_passes(m, classification=True)
    assert [i.dtype for i in m.inputs] == ["float32", "float32", "string"]

    from edgeml.runtime import load

    device = load(tmp_path / "b")
    raw = {"age": np.array([30.0], np.float32), "monthly spend": np.array([20.0], np.float32), "plan": np.array([""], object)}
    expected = model.predict_proba(pd.DataFrame({"age": [30.0], "monthly spend": [20.0], "plan": [np.nan]}))
    np.testing.assert_allclose(device.predict(raw)["probabilities"], expected, atol=1e-5)  # "" on the device is NaN for sklearn


def _native_boosters(tmp_path):
    import lightgbm as lgb
    import xgboost as xgb

    Xc, yc = _data("breast_cancer")
    Xm, ym = _data("iris")
    Xr, yr = _data("diabetes")
    files = {}
    xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(Xc, yc), 10).save_model(tmp_path / "xgb_binary.json")
    xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1}, xgb.DMatrix(Xm, ym), 10).save_model(tmp_path / "xgb_multi.ubj")
    xgb.train({"objective": "reg:squarederror", "max_depth": 3, "nthread": 1}, xgb.DMatrix(Xr, yr), 10).save_model(tmp_path / "xgb_reg.json")
    params = {"verbose": -1, "num_leaves": 7, "num_threads": 1}
    lgb.train({**params, "objective": "multiclass", "num_class": 3}, lgb.Dataset(Xm, ym), 10).save_model(tmp_path / "lgb_multi.txt")
    lgb.train({**params, "objective": "binary"}, lgb.Dataset(Xc, yc), 10).save_model(tmp_path / "lgb_binary.txt")
    lgb.train({**params, "objective": "regression"}, lgb.Dataset(Xr, yr), 10).save_model(tmp_path / "lgb_reg.txt")
    for name, (X, y) in {"xgb_binary.json": (Xc, yc), "xgb_multi.ubj": (Xm, ym), "xgb_reg.json": (Xr, yr),
                         "lgb_multi.txt": (Xm, ym), "lgb_binary.txt": (Xc, yc), "lgb_reg.txt": (Xr, yr)}.items():
        np.savez(tmp_path / f"{name}.npz", input=X, label=y)
        files[name] = (tmp_path / name, tmp_path / f"{name}.npz", "reg" not in name, X.shape[1])
    return files


@pytest.fixture(scope="module")
def native_boosters(tmp_path_factory):
    return _native_boosters(tmp_path_factory.mktemp("boosters"))


@pytest.mark.parametrize("name", ["xgb_binary.json", "xgb_multi.ubj", "xgb_reg.json", "lgb_multi.txt", "lgb_binary.txt", "lgb_reg.txt"])
def test_native_booster_file_converts_with_task_and_dtypes(name, native_boosters, run_cli, tmp_path):
    path, validation, classification, n_features = native_boosters[name]
    m = _convert(run_cli, path, tmp_path, validation)
    _assert_passes(m, classification)
    assert m.source["kind"] == "booster" and m.source["n_features"] == n_features
    assert [(i.name, i.dtype, i.shape) for i in m.inputs] == [("input", "float32", [None, n_features])]
    if classification:
        assert {o.name: o.dtype for o in m.outputs}["label"] == "int64"


def test_tree_models_refuse_fp16_and_int8_up_front(native_boosters, run_cli, tmp_path):
    path, validation, _, _ = native_boosters["lgb_binary.txt"]
    for precision in ("fp16", "int8"):
        result = run_cli("convert", path, "--out", tmp_path / precision, "--name", "m", "--version", "1",
                         "--validation", validation, "--precision", precision)
        assert result.exit_code != 0 and "Error:" in result.output and f"onnx/{precision}" in result.output, result.output
        assert not (tmp_path / precision).exists()
    result = run_cli("convert", path, "--out", tmp_path / "ov", "--name", "m", "--version", "1", "--to", "openvino")
    assert result.exit_code != 0 and "openvino/fp32" in result.output and "ai.onnx.ml" in result.output, result.output


def test_lightgbm_onnx_from_onnxmltools_is_a_classifier(run_cli, tmp_path):
    import lightgbm as lgb
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    X, y = _data("iris")
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_leaves": 7, "num_threads": 1},
                        lgb.Dataset(X, y), 10)
    onx = onnxmltools.convert_lightgbm(booster, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=15)  # ZipMap output
    (tmp_path / "lgb.onnx").write_bytes(onx.SerializeToString())
    np.savez(tmp_path / "val.npz", input=X, label=y)
    m = _convert(run_cli, tmp_path / "lgb.onnx", tmp_path, tmp_path / "val.npz")
    _assert_passes(m, classification=True)
    assert all(not o.dtype.startswith("onnx-elem") for o in m.outputs)


def test_unconvertible_estimator_is_one_error_naming_it(run_cli, tmp_path):
    from sklearn.semi_supervised import SelfTrainingClassifier
    from sklearn.svm import SVC

    X, y = _data("iris")
    joblib.dump(SelfTrainingClassifier(SVC(probability=True)).fit(X, y), tmp_path / "m.joblib")
    result = run_cli("convert", tmp_path / "m.joblib", "--out", tmp_path / "b", "--name", "m", "--version", "1")
    assert result.exit_code != 0 and "Error:" in result.output and "SelfTrainingClassifier" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()


def test_readme_walkthrough_train_random_forest_then_the_printed_convert(run_cli, tmp_path, monkeypatch):
    """README "Walkthrough": `edgeml train --data churn.csv ... --model random_forest` then exactly the
    `edgeml convert` line train prints (fewer search trials than the README's 20, to stay fast)."""
    import shlex

    rng = np.random.default_rng(0)
    n = 250
    df = pd.DataFrame({"age": rng.normal(40, 12, n).round(), "monthly spend": rng.gamma(2, 30, n).round(2),
                       "plan": rng.choice(["basic", "plus", "pro"], n), "region": rng.choice(["north", "south"], n)})
    df.loc[rng.random(n) < 0.1, "age"] = np.nan
    churned = ((df["monthly spend"] < 40) & (df["plan"] == "basic")) | (rng.random(n) < 0.1)
    df.assign(churned=churned.astype(int)).to_csv(tmp_path / "churn.csv", index=False)
    monkeypatch.chdir(tmp_path)
    trained = run_cli("train", "--data", "churn.csv", "--target", "churned", "--model", "random_forest", "--search", "bayes",
                      "--trials", "2", "--sensitive", "region", "--out", "runs/rf")
    assert trained.exit_code == 0, trained.output
    printed = next(line for line in trained.output.splitlines() if line.startswith("next: edgeml convert "))
    args = shlex.split(printed.removeprefix("next: edgeml "))
    converted = run_cli(*args)
    assert converted.exit_code == 0, converted.output
    bundles = [p for p in tmp_path.iterdir() if (p / "manifest.json").is_file()]
    assert len(bundles) == 1
    m = read_manifest(bundles[0])
    _assert_passes(m, classification=True)
    assert m.source["estimator"] == "RandomForestClassifier"
