"""--sensitive: per-group metrics, gaps and flags; report.html with its plots."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from train_data import read_json, tabular_csv


@pytest.fixture(scope="module")
def biased_run(run_cli, tmp_path_factory):
    """A random forest with a bayes search where group g2 gets a worse deal."""
    import pandas as pd

    root = tmp_path_factory.mktemp("bias")
    csv = tabular_csv(root / "data.csv", n=300)
    df = pd.read_csv(csv)
    flip = (df.group == "g2") & (np.arange(len(df)) % 3 == 0)
    df.loc[flip, "y"] = 0  # label noise against g2
    df.to_csv(csv, index=False)
    result = run_cli("train", "--data", csv, "--target", "y", "--model", "random_forest", "--search", "bayes", "--trials", "2",
                     "--cv", "2", "--jobs", "1", "--sensitive", "group", "--bias-threshold", "0.05", "--out", root / "run")
    assert result.exit_code == 0, result.output
    return root / "run", result


def test_per_group_metrics_and_largest_gap(biased_run):
    run, result = biased_run
    bias = read_json(run / "metrics.json")["bias"]
    assert bias["column"] == "group" and bias["positive_label"] == 1
    assert [g["group"] for g in bias["groups"]] == ["g1", "g2"]
    for g in bias["groups"]:
        assert g["n"] > 0 and {"accuracy", "selection_rate", "tpr"} <= set(g)
    assert bias["gaps"]["selection_rate"] == pytest.approx(abs(bias["groups"][0]["selection_rate"] - bias["groups"][1]["selection_rate"]), abs=1e-6)
    metric, gap = bias["largest_gap"]
    assert gap == max(v for v in bias["gaps"].values() if v is not None)
    assert bias["flagged"] == [m for m, v in bias["gaps"].items() if v is not None and v > 0.05]
    assert "bias by group" in result.stdout


def test_bias_flags_only_above_the_threshold(run_cli, tmp_path):
    csv = tabular_csv(tmp_path / "data.csv", n=200)
    result = run_cli("train", "--data", csv, "--target", "y", "--model", "logistic_regression", "--cv", "2", "--jobs", "1",
                     "--sensitive", "group", "--bias-threshold", "1.0", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    bias = read_json(tmp_path / "run" / "metrics.json")["bias"]
    assert bias["flagged"] == [] and "no gap above threshold" in result.stdout


def test_bias_unit_gaps_and_true_positive_rate():
    from edgeml.train.bias import bias_report
    from edgeml.train.options import TaskKind, TrainOptions

    y_true = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    y_pred = np.array([1, 1, 0, 0, 1, 0, 0, 1])
    groups = np.array(["a"] * 4 + ["b"] * 4)
    opts = TrainOptions(out=None, model="x", sensitive="s", bias_threshold=0.4)
    report = bias_report(y_true, y_pred, groups, TaskKind.CLASSIFICATION, [0, 1], opts)
    a, b = report.groups
    assert (a["accuracy"], a["tpr"], a["selection_rate"]) == (1.0, 1.0, 0.5)
    assert (b["accuracy"], b["tpr"], b["selection_rate"]) == (0.5, 0.5, 0.5)
    assert report.gaps == {"accuracy": 0.5, "selection_rate": 0.0, "tpr": 0.5}
    assert report.flagged == ["accuracy", "tpr"]


def test_report_embeds_every_plot_as_png(biased_run):
    run, _ = biased_run
    html = (run / "report.html").read_text()
    images = dict(re.findall(r"id='([a-z-]+)' alt='[^']*' src='data:image/png;base64,([^']+)'", html))
    assert set(images) == {"confusion-matrix", "roc-curve", "feature-importance", "group-metrics"}
    for data in images.values():
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "FLAGGED" in html or "no gap above" in html
    assert "best parameters" in html


def test_regression_report_has_importance_but_no_classifier_plots(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "diabetes", "--model", "decision_tree", "--cv", "2", "--jobs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "run" / "report.html").read_text()
    assert "id='feature-importance'" in html and "id='confusion-matrix'" not in html and "id='roc-curve'" not in html
