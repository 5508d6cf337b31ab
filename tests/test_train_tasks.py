"""`edgeml train` for each task, the run directory it writes, and `edgeml convert RUN_DIR` on scikit-learn runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from train_data import read_json, tabular_csv

FAST = ("--cv", "3", "--jobs", "1")


def train_ok(run_cli, *args):
    result = run_cli("train", *args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def tabular_run(run_cli, tmp_path_factory):
    """Logistic regression on numbers, categories and a free-text column, with missing values and duplicates."""
    root = tmp_path_factory.mktemp("tabular")
    csv = tabular_csv(root / "data.csv", text=True)
    train_ok(run_cli, "--data", csv, "--target", "y", "--model", "logistic_regression", *FAST, "--out", root / "run")
    return root / "run"


def test_classification_run_has_every_output(tabular_run):
    for name in ("edgeml-run.json", "model.joblib", "metrics.json", "report.html", "reference.json", "calibration.csv", "validation.csv"):
        assert (tabular_run / name).is_file(), name
    metrics = read_json(tabular_run / "metrics.json")
    assert metrics["task"] == "classification"
    assert set(metrics["evaluation"]["metrics"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert metrics["evaluation"]["metrics"]["accuracy"] > 0.7
    assert metrics["evaluation"]["confusion"]["labels"] == [0, 1]
    assert metrics["search"]["cv_score"] is not None


def test_data_cleaning_is_counted_and_columns_are_typed(tabular_run):
    data = read_json(tabular_run / "metrics.json")["data"]
    assert data["duplicates_dropped"] == 4
    assert data["missing_values"]["x1"] > 0 and data["missing_values"]["city"] > 0
    assert data["columns_by_kind"] == {"numeric": ["x1", "x2"], "categorical": ["city", "group"], "text": ["review"]}


def test_reference_histograms_use_fixed_bins(tabular_run):
    ref = read_json(tabular_run / "reference.json")
    by_name = {f["feature"]: f for f in ref["features"]}
    assert by_name["x1"]["kind"] == "numeric" and len(by_name["x1"]["counts"]) == len(by_name["x1"]["edges"]) + 1
    assert by_name["city"]["kind"] == "categorical" and "oslo" in by_name["city"]["categories"]
    assert ref["prediction"]["kind"] == "categorical"


def test_convert_takes_a_tabular_run_with_text_features(run_cli, tabular_run, tmp_path):
    out = tmp_path / "bundle"
    result = run_cli("convert", tabular_run, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    manifest = read_json(out / "manifest.json")
    run = read_json(tabular_run / "edgeml-run.json")
    assert manifest["name"] == "run" and manifest["version"] == run["run_id"]
    assert manifest["metrics"]["test"] == read_json(tabular_run / "metrics.json")["evaluation"]["metrics"]
    assert manifest["reference"]["data"] == "calibration.csv" and manifest["reference"]["features"]
    inputs = {i["name"]: i["dtype"] for i in manifest["inputs"]}
    assert inputs["review"] == "string" and inputs["city"] == "string" and inputs["x1"] == "float32"
    assert manifest["artifacts"][0]["validation"]["passed"]


def test_regression_on_a_bundled_dataset(run_cli, tmp_path):
    train_ok(run_cli, "--dataset", "diabetes", "--model", "linear_regression", *FAST, "--out", tmp_path / "run")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["task"] == "regression" and metrics["search"]["scoring"] == "r2"
    assert set(metrics["evaluation"]["metrics"]) == {"mae", "rmse", "r2"}
    assert metrics["evaluation"]["metrics"]["r2"] > 0.2
    assert metrics["evaluation"]["confusion"] is None


def test_clustering_ignores_the_target_and_reports_silhouette(run_cli, tmp_path):
    result = train_ok(run_cli, "--dataset", "iris", "--task", "clustering", "--model", "kmeans", *FAST, "--out", tmp_path / "run")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["task"] == "clustering" and metrics["search"]["scoring"] == "silhouette"
    assert 0 < metrics["evaluation"]["metrics"]["silhouette"] <= 1
    assert "target" not in metrics["data"]["columns_by_kind"]["numeric"]
    assert "silhouette" in result.stdout


def test_convert_takes_a_clustering_run(run_cli, tmp_path):
    train_ok(run_cli, "--dataset", "iris", "--task", "clustering", "--model", "kmeans", *FAST, "--out", tmp_path / "run")
    result = run_cli("convert", tmp_path / "run", "--out", tmp_path / "b", "--name", "iris-clusters", "--version", "2")
    assert result.exit_code == 0, result.output
    manifest = read_json(tmp_path / "b" / "manifest.json")
    assert manifest["name"] == "iris-clusters" and manifest["version"] == "2" and manifest["task"] == "clustering"
    assert manifest["metrics"]["test"]["silhouette"] > 0


def test_config_file_supplies_options_and_flags_win(run_cli, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("dataset: iris\nmodel: decision_tree\ncv: 3\njobs: 1\ntest-size: 0.3\nseed: 7\n")
    train_ok(run_cli, "--config", config, "--seed", "3", "--out", tmp_path / "run")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["model"] == "decision_tree" and metrics["seed"] == 3
    assert metrics["data"]["test_rows"] == 45  # 30% of 149 unique rows


def test_printed_convert_command_names_the_run(run_cli, tmp_path):
    result = train_ok(run_cli, "--dataset", "iris", "--model", "decision_tree", *FAST, "--out", tmp_path / "run")
    assert f"edgeml convert {tmp_path / 'run'} --to onnx --precision fp32" in result.stdout
    assert "report:" in result.stdout


def test_edgeml_help_does_not_import_the_train_package():
    code = ("import sys; from edgeml.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('edgeml.train', 'sklearn', 'torch', 'optuna', 'matplotlib', 'mlflow') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "train" in out
