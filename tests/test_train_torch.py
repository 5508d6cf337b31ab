"""PyTorch models (CNN on digits, MLP on tabular data) and `edgeml convert RUN_DIR` at int8 / fp32."""

from __future__ import annotations

import numpy as np
import pytest

from train_data import read_json, tabular_csv


@pytest.fixture(scope="module")
def cnn_run(run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn") / "cnn"
    result = run_cli("train", "--dataset", "digits", "--model", "cnn", "--epochs", "4", "--cv", "2", "--jobs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_cnn_on_digits_trains_and_saves_an_exported_program(cnn_run):
    run = read_json(cnn_run / "edgeml-run.json")
    assert run["framework"] == "torch" and run["model_file"] == "model.pt2" and (cnn_run / "model.pt2").is_file()
    assert run["labels"] == list(range(10))
    metrics = read_json(cnn_run / "metrics.json")
    assert metrics["evaluation"]["metrics"]["accuracy"] > 0.8
    with np.load(cnn_run / "calibration.npz") as cal:
        assert cal["input"].shape[1:] == (1, 8, 8) and cal["input"].dtype == np.float32


def test_cnn_stops_early_on_the_validation_split(tmp_path):
    from sklearn.datasets import load_digits

    from edgeml.train.torch_models import TorchClassifier

    X, y = load_digits(return_X_y=True)
    est = TorchClassifier(arch="cnn", image_shape=(1, 8, 8), epochs=200, patience=2, lr=0.02).fit(X[:400], y[:400])
    assert len(est.history_) < 200
    best = min(h["val_loss"] for h in est.history_)
    assert est.history_[-3]["val_loss"] == best  # the best epoch, then `patience` epochs without improvement


def test_convert_cnn_run_to_int8_carries_metrics_and_reference(run_cli, cnn_run, tmp_path):
    out = tmp_path / "bundle"
    result = run_cli("convert", cnn_run, "--to", "onnx", "--precision", "int8", "--out", out)
    assert result.exit_code == 0, result.output
    manifest = read_json(out / "manifest.json")
    assert [a["precision"] for a in manifest["artifacts"]] == ["int8"]
    assert manifest["artifacts"][0]["validation"]["passed"]
    assert manifest["metrics"]["test"]["accuracy"] == read_json(cnn_run / "metrics.json")["evaluation"]["metrics"]["accuracy"]
    assert manifest["metrics"]["model"] == "cnn"
    assert manifest["reference"]["features"] and manifest["reference"]["prediction"]["kind"] == "categorical"
    assert manifest["labels"] == list(range(10))


def test_mlp_on_tabular_numbers_converts_to_int8(run_cli, tmp_path):
    import pandas as pd

    csv = tabular_csv(tmp_path / "data.csv")
    frame = pd.read_csv(csv).drop(columns=["city", "group"])
    frame.to_csv(csv, index=False)
    result = run_cli("train", "--data", csv, "--target", "y", "--model", "mlp", "--epochs", "15", "--cv", "2", "--jobs", "1",
                     "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "--precision fp32,int8" in result.stdout
    result = run_cli("convert", tmp_path / "run", "--precision", "fp32,int8", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    manifest = read_json(tmp_path / "b" / "manifest.json")
    assert all(a["validation"]["passed"] for a in manifest["artifacts"])  # NaN imputation travels inside the graph


def test_mlp_regression(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "diabetes", "--model", "mlp", "--epochs", "20", "--cv", "2", "--jobs", "1",
                     "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "run" / "metrics.json")["evaluation"]["metrics"]["r2"] > 0.0


def test_random_forest_run_converts_at_fp32_and_int8_is_refused(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "breast_cancer", "--model", "random_forest", "--cv", "2", "--jobs", "1",
                     "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    ok = run_cli("convert", tmp_path / "run", "--precision", "fp32", "--out", tmp_path / "b32")
    assert ok.exit_code == 0, ok.output
    assert read_json(tmp_path / "b32" / "manifest.json")["metrics"]["model"] == "random_forest"
    refused = run_cli("convert", tmp_path / "run", "--precision", "int8", "--out", tmp_path / "b8")
    assert refused.exit_code != 0 and len(refused.error_lines) == 1
    assert "TreeEnsembleClassifier" in refused.error_lines[0] and not (tmp_path / "b8").exists()


def test_cuda_without_a_gpu_is_refused(run_cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = run_cli("train", "--dataset", "digits", "--model", "cnn", "--device", "cuda", "--out", tmp_path / "run")
    assert result.exit_code != 0 and "no CUDA device" in result.error_lines[0]
    assert not (tmp_path / "run").exists()
