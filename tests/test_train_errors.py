"""Bad input to `edgeml train`: one `Error: ...` line, non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import pytest

from train_data import tabular_csv


def assert_clean_failure(result, root, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert len(result.error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.error_lines[0], result.error_lines[0]
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".") or p.name == "run"]
    assert leftovers == [], f"half-written output left behind: {leftovers}"


def train(run_cli, root, *args):
    return run_cli("train", *args, "--cv", "2", "--jobs", "1", "--out", root / "run")


@pytest.fixture()
def csv(tmp_path):
    return tabular_csv(tmp_path / "data.csv", n=60)


def write_csv(path, text):
    path.write_text(text)
    return path


def test_missing_target_column(run_cli, tmp_path, csv):
    assert_clean_failure(train(run_cli, tmp_path, "--data", csv, "--target", "label", "--model", "decision_tree"),
                         tmp_path, "target column 'label'", "x1, x2, city")


def test_target_with_one_class(run_cli, tmp_path):
    data = write_csv(tmp_path / "one.csv", "a,b,y\n" + "".join(f"{i},{i % 3},yes\n" for i in range(20)))
    assert_clean_failure(train(run_cli, tmp_path, "--data", data, "--target", "y", "--model", "decision_tree"),
                         tmp_path, "one class", "'yes'")


def test_regression_on_a_string_target(run_cli, tmp_path, csv):
    assert_clean_failure(train(run_cli, tmp_path, "--data", csv, "--target", "city", "--task", "regression",
                               "--model", "decision_tree"), tmp_path, "regression needs numbers", "--task classification")


def test_classification_on_a_continuous_target(run_cli, tmp_path, csv):
    assert_clean_failure(train(run_cli, tmp_path, "--data", csv, "--target", "x2", "--task", "classification",
                               "--model", "decision_tree"), tmp_path, "continuous", "--task regression")


def test_model_that_does_not_do_the_task(run_cli, tmp_path):
    assert_clean_failure(train(run_cli, tmp_path, "--dataset", "iris", "--model", "linear_regression"),
                         tmp_path, "does not do classification", "logistic_regression")


def test_unknown_model_lists_the_valid_ones(run_cli, tmp_path):
    assert_clean_failure(train(run_cli, tmp_path, "--dataset", "iris", "--model", "transformer"),
                         tmp_path, "unknown model 'transformer'", "random_forest", "cnn", "kmeans")


def test_unknown_dataset_lists_the_valid_ones(run_cli, tmp_path):
    assert_clean_failure(train(run_cli, tmp_path, "--dataset", "mnist", "--model", "cnn"),
                         tmp_path, "unknown dataset 'mnist'", "digits", "breast_cancer")


@pytest.mark.parametrize("name, content, says", [
    ("empty.csv", b"", "is empty"),
    ("header.csv", b"a,b,y\n", "has no rows"),
    ("garbage.parquet", b"\x00not parquet" * 20, "not readable as .parquet"),
    ("data.xlsx", b"x", "use .csv, .parquet"),
])
def test_empty_or_unreadable_file(run_cli, tmp_path, name, content, says):
    (tmp_path / name).write_bytes(content)
    assert_clean_failure(train(run_cli, tmp_path, "--data", tmp_path / name, "--target", "y", "--model", "decision_tree"),
                         tmp_path, says)


def test_missing_file(run_cli, tmp_path):
    assert_clean_failure(train(run_cli, tmp_path, "--data", tmp_path / "nope.csv", "--target", "y", "--model", "decision_tree"),
                         tmp_path, "not found")


def test_sensitive_column_that_does_not_exist(run_cli, tmp_path, csv):
    assert_clean_failure(train(run_cli, tmp_path, "--data", csv, "--target", "y", "--model", "decision_tree", "--sensitive", "gender"),
                         tmp_path, "sensitive column 'gender'", "group")


def test_cnn_needs_image_data(run_cli, tmp_path):
    assert_clean_failure(train(run_cli, tmp_path, "--dataset", "iris", "--model", "cnn"), tmp_path, "needs image data")


def test_torch_model_on_string_columns(run_cli, tmp_path, csv):
    assert_clean_failure(train(run_cli, tmp_path, "--data", csv, "--target", "y", "--model", "mlp"), tmp_path, "city", "group")


def test_fewer_samples_in_a_class_than_folds(run_cli, tmp_path):
    data = write_csv(tmp_path / "rare.csv", "a,y\n" + "".join(f"{i},{'b' if i < 3 else 'a'}\n" for i in range(40)))
    result = run_cli("train", "--data", data, "--target", "y", "--model", "decision_tree", "--cv", "5", "--jobs", "1", "--out", tmp_path / "run")
    assert_clean_failure(result, tmp_path, "smallest class", "--cv")


def test_existing_output_is_kept_without_force(run_cli, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    result = train(run_cli, tmp_path, "--dataset", "iris", "--model", "decision_tree")
    assert result.exit_code != 0 and "already exists" in result.error_lines[0] and "--force" in result.error_lines[0]
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def test_mlflow_without_the_package_names_the_extra(run_cli, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow were not installed
    assert_clean_failure(train(run_cli, tmp_path, "--dataset", "iris", "--model", "decision_tree", "--mlflow", "file:./mlruns"),
                         tmp_path, "mlflow is not installed", "edgeml[mlflow]")


@pytest.mark.parametrize("text, says", [("model: [unclosed", "not valid YAML"), ("modle: cnn\n", "unknown option 'modle'"),
                                        ("- a\n- b\n", "must be a mapping")])
def test_bad_config_file(run_cli, tmp_path, text, says):
    (tmp_path / "c.yaml").write_text(text)
    assert_clean_failure(run_cli("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run"), tmp_path, says)


def test_missing_model_and_data(run_cli, tmp_path):
    assert_clean_failure(run_cli("train", "--dataset", "iris", "--out", tmp_path / "run"), tmp_path, "--model")
    assert_clean_failure(train(run_cli, tmp_path, "--model", "decision_tree"), tmp_path, "--data", "--dataset")


def test_convert_of_a_broken_run_manifest(run_cli, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "edgeml-run.json").write_text("{not json")
    result = run_cli("convert", tmp_path / "run", "--out", tmp_path / "b")
    assert result.exit_code != 0 and "not a readable run manifest" in result.error_lines[0] and not (tmp_path / "b").exists()


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    from edgeml.train import report
    from edgeml.train.options import TrainOptions
    from edgeml.train.training import train as run_train

    def broken(_summary):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "render", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run_train(TrainOptions(out=tmp_path / "run", model="decision_tree", dataset="iris", cv=2, n_jobs=1))
    assert list(tmp_path.iterdir()) == []
