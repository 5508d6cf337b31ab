"""`--explain permutation|shap|none` and the robustness section of the train report."""

from __future__ import annotations

import json
import sys

import pytest

TRAIN = ("--cv", "2", "--jobs", "1")


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def default_run(run_cli, tmp_path_factory):
    """iris + logistic regression with every default (permutation importance, robustness on)."""
    root = tmp_path_factory.mktemp("explain-default")
    result = run_cli("train", "--dataset", "iris", "--model", "logistic_regression", *TRAIN, "--out", root / "run")
    assert result.exit_code == 0, result.output
    return root / "run", result


def test_permutation_is_the_default(default_run):
    run, _ = default_run
    ev = _metrics(run)["evaluation"]
    assert ev["importance_method"] == "permutation"
    assert {r["feature"] for r in ev["importance"]} == {"sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"}
    assert max(r["mean"] for r in ev["importance"]) > 0


def test_explain_none_has_no_importance(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "iris", "--model", "decision_tree", *TRAIN, "--explain", "none", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    ev = _metrics(tmp_path / "run")["evaluation"]
    assert ev["importance"] == [] and ev["importance_method"] == "none"
    assert "id='feature-importance'" not in (tmp_path / "run" / "report.html").read_text()


def test_explain_shap_is_quiet_and_ranks_features(run_cli, tmp_path):
    pytest.importorskip("shap")
    result = run_cli("train", "--dataset", "iris", "--model", "decision_tree", *TRAIN, "--explain", "shap", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    ev = _metrics(tmp_path / "run")["evaluation"]
    assert ev["importance_method"] == "shap" and len(ev["importance"]) == 4
    assert ev["importance"][0]["feature"].startswith("petal")  # iris is separated by the petals
    assert "explainer" not in result.output.lower() and "it/s" not in result.output  # no shap progress bar


def test_explain_shap_without_the_package_fails_before_training(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "shap", None)  # as if shap were not installed
    result = run_cli("train", "--dataset", "iris", "--model", "decision_tree", *TRAIN, "--explain", "shap", "--out", tmp_path / "run")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.error_lines == ["Error: shap is not installed; install it with: pip install 'edgeml[explain]'"]
    assert "loading data" not in result.stderr and not (tmp_path / "run").exists()


def _falls(rows, baseline):
    values = [r["value"] for r in rows]
    return values[-1] < baseline and values[-1] < values[0]


def test_robustness_section_falls_as_noise_grows(default_run):
    run, result = default_run
    rob = _metrics(run)["robustness"]
    assert rob["metric"] == "accuracy" and rob["rows"] == 30 and rob["perturbed_features"] == 4
    assert [r["strength"] for r in rob["noise"]] == [0.1, 0.25, 0.5, 1.0]
    assert _falls(rob["noise"], rob["baseline"]) and rob["noise"][-1]["drop"] > 0.05
    assert rob["fgsm"] is None  # FGSM is for PyTorch models
    html = (run / "report.html").read_text()
    assert "id='robustness'" in html and html.index("id='robustness'") > html.index("<h2>Data</h2>")
    assert "robustness (accuracy on 30 test rows): clean" in result.stdout


def test_regression_robustness_uses_r2(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "diabetes", "--model", "linear_regression", *TRAIN, "--explain", "none",
                     "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    rob = _metrics(tmp_path / "run")["robustness"]
    assert rob["metric"] == "r2" and _falls(rob["noise"], rob["baseline"])


def test_torch_model_gets_fgsm(run_cli, tmp_path):
    pytest.importorskip("torch")
    result = run_cli("train", "--dataset", "iris", "--model", "mlp", "--epochs", "20", *TRAIN, "--explain", "none",
                     "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    rob = _metrics(tmp_path / "run")["robustness"]
    assert [r["epsilon"] for r in rob["fgsm"]] == [0.05, 0.1, 0.25]
    assert _falls(rob["fgsm"], rob["baseline"])  # the worst-case step hurts more as it grows
    assert "FGSM" in (tmp_path / "run" / "report.html").read_text()


def test_no_robustness_flag(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "iris", "--model", "decision_tree", *TRAIN, "--explain", "none", "--no-robustness",
                     "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert _metrics(tmp_path / "run")["robustness"] is None
    assert "id='robustness'" not in (tmp_path / "run" / "report.html").read_text()
