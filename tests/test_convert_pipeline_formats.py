"""scikit-learn pipelines on every format: numeric preprocessing is rewritten to standard operators;
string one-hot encoding keeps a pipeline ONNX-only, and asking for more is refused up front."""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pytest

from conftest import convert_or_fail
from edgeml.bundle import read_manifest


@pytest.mark.slow
def test_numeric_pipeline_with_missing_values_runs_on_all_three_runtimes(run_cli, tmp_path):
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    X[::5, 1] = np.nan
    y = (np.nan_to_num(X[:, 0]) > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()),
                         ("mlp", MLPClassifier((16,), max_iter=400, random_state=0))]).fit(X, y)
    joblib.dump(pipe, tmp_path / "p.joblib")
    np.savez(tmp_path / "data.npz", input=X.astype(np.float32), label=y)
    bundle = convert_or_fail(run_cli, tmp_path / "p.joblib", "--out", tmp_path / "b", "--name", "p", "--version", "1",
                             "--to", "onnx,tflite,openvino", "--calibration", tmp_path / "data.npz")
    m = read_manifest(bundle)
    assert {a.format for a in m.artifacts} == {"onnx", "tflite", "openvino"}
    for a in m.artifacts:
        assert a.validation["passed"] and a.validation["top1_agreement"] == 1.0, a.key
    # NaN rows went through each runtime's imputation: the golden samples contain them.
    with np.load(bundle / "samples.npz") as s:
        assert np.isnan(s["input/input"]).any()


def test_string_columns_keep_a_pipeline_onnx_only(run_cli, tabular, tmp_path):
    result = run_cli("convert", tabular.model, "--out", tmp_path / "b", "--name", "t", "--version", "1",
                     "--to", "onnx,tflite", "--calibration", tabular.csv)
    assert result.exit_code != 0 and len(result.error_lines) == 1
    assert "tflite/fp32" in result.error_lines[0] and "OneHotEncoder" in result.error_lines[0]
    assert not (tmp_path / "b").exists()


def test_bare_mlp_keeps_its_input_name_on_openvino(run_cli, tmp_path):
    """OpenVINO folds the input Cast and may name the port after it; the artifact must keep `input`."""
    from sklearn.neural_network import MLPClassifier

    X = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joblib.dump(MLPClassifier((32,), max_iter=300, random_state=0).fit(X, y), tmp_path / "m.joblib")
    np.savez(tmp_path / "d.npz", input=X, label=y)
    bundle = convert_or_fail(run_cli, tmp_path / "m.joblib", "--out", tmp_path / "b", "--name", "m", "--version", "1",
                             "--to", "openvino", "--calibration", tmp_path / "d.npz")
    from edgeml.runtime import load

    model = load(bundle, backend="openvino")
    assert model.predict({"input": X[:3]})["label"].shape == (3,)
