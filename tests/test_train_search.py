"""Each search kind on tiny data: candidates tried, best parameters reported and used."""

from __future__ import annotations

import pytest

from train_data import read_json


@pytest.mark.parametrize("kind, model, candidates", [
    ("grid", "decision_tree", 9),  # two numeric ranges x 3 grid points
    ("random", "svm", 3),
    ("bayes", "logistic_regression", 3),
])
def test_search_reports_best_parameters(run_cli, tmp_path, kind, model, candidates):
    result = run_cli("train", "--dataset", "iris", "--model", model, "--search", kind, "--trials", "3", "--cv", "2",
                     "--jobs", "2", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    search = read_json(tmp_path / "run" / "metrics.json")["search"]
    assert search["kind"] == kind and search["candidates"] == candidates == len(search["trials"])
    assert search["best_params"] and all(k.startswith("model__") for k in search["best_params"])
    assert search["cv_score"] == max(t["score"] for t in search["trials"])
    assert "best parameters:" in result.stdout and f"{kind} search" in result.stderr


def test_best_parameters_are_the_fitted_ones(run_cli, tmp_path):
    import joblib

    result = run_cli("train", "--dataset", "wine", "--model", "random_forest", "--search", "bayes", "--trials", "2",
                     "--cv", "2", "--jobs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    best = read_json(tmp_path / "run" / "metrics.json")["search"]["best_params"]
    params = joblib.load(tmp_path / "run" / "model.joblib").get_params()
    assert all(params[k] == v for k, v in best.items())


def test_regression_search_scores_r2(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "diabetes", "--model", "linear_regression", "--search", "random", "--trials", "3",
                     "--cv", "2", "--jobs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    search = read_json(tmp_path / "run" / "metrics.json")["search"]
    assert search["scoring"] == "r2" and 0 < search["cv_score"] < 1
