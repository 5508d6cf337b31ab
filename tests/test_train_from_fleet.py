"""`edgeml train --from-fleet`: captured rows + the original data, the old run's recipe, the comparison report."""

from __future__ import annotations

import json
import shutil

from fleet_fixtures import TOKEN, wait_until
from retrain_fixtures import captured, cli, iris_like, loop, send  # noqa: F401  (loop: the session fixture)


def from_fleet(loop, out, *extra):
    return cli("train", "--from-fleet", "iris@1.0", "--fleet-url", loop.fleet.url, "--token", TOKEN,
               "--since", "7d", "--run-dir", loop.run, "--out", out, "--jobs", "1", *extra)


def test_retrains_from_captured_rows_plus_the_original_data_with_the_old_recipe(loop, tmp_path):
    from edgeml.messages import RunManifest

    for i in range(12):
        send(loop, iris_like(4, seed=i))
    wait_until(lambda: captured(loop, "1.0") >= 12, 30, "twelve captured requests on the fleet")
    n_rows = captured(loop, "1.0")
    out = tmp_path / "new"
    r = from_fleet(loop, out, "--pseudo-label")
    assert r.exit_code == 0, r.output
    assert "original_test" in r.output and "fleet" in r.output and "pseudo" in r.output

    comparison = json.loads((out / "comparison.json").read_text())
    old, new = RunManifest.read(loop.run), RunManifest.read(out)
    assert comparison["old_run"] == old.run_id and comparison["new_run"] == new.run_id
    assert comparison["fleet_rows"] == n_rows and comparison["fleet_samples"] == 4 * n_rows
    held, fleet = comparison["datasets"]["original_test"], comparison["datasets"]["fleet"]
    assert held["rows"] == old.metrics["test_rows"] == 30 and fleet["rows"] == 4 * n_rows
    assert set(held["old"]) == set(held["new"]) == {"accuracy", "f1_macro"}
    assert fleet["old"]["accuracy"] == 1.0  # pseudo-labels are the old model's own predictions
    assert comparison["label_source"] == "pseudo" and "by construction" in comparison["note"]
    # The same recipe; the original test split kept as the test split; the captured samples in training.
    for key in ("model", "search", "cv", "seed", "task", "target", "explain", "robustness"):
        assert new.recipe[key] == old.recipe[key], key
    assert new.recipe["holdout_rows"] == 30 and new.recipe["data"] == str(tmp_path / "new.data.csv")
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["data"]["test_rows"] == 30
    original = old.metrics["train_rows"] + old.metrics["test_rows"]  # iris after its one duplicate is dropped
    assert summary["data"]["rows_read"] == original + 4 * n_rows


def test_rows_without_labels_are_refused_unless_pseudo_labelling_is_asked_for(loop, tmp_path):
    wait_until(lambda: captured(loop, "1.0") >= 1, 30, "captured rows")
    r = from_fleet(loop, tmp_path / "refused")
    assert r.exit_code != 0 and "--pseudo-label" in r.output, r.output
    assert list(tmp_path.iterdir()) == []  # no run directory, no data file


def test_a_run_directory_that_did_not_train_the_version_is_refused(loop, tmp_path):
    other = tmp_path / "other-run"
    shutil.copytree(loop.run, other)
    manifest = json.loads((other / "edgeml-run.json").read_text())
    (other / "edgeml-run.json").write_text(json.dumps({**manifest, "run_id": "someone-else"}))
    r = cli("train", "--from-fleet", "iris@1.0", "--fleet-url", loop.fleet.url, "--token", TOKEN, "--run-dir", other,
            "--out", tmp_path / "new", "--pseudo-label")
    assert r.exit_code != 0 and "was trained by run" in r.output, r.output
    assert not (tmp_path / "new").exists()


def test_bad_flags_get_one_clear_error(loop, tmp_path):
    r = cli("train", "--from-fleet", "iris@", "--fleet-url", loop.fleet.url, "--run-dir", loop.run, "--out", tmp_path / "x")
    assert r.exit_code != 0 and "MODEL@VERSION" in r.output
    r = cli("train", "--from-fleet", "iris", "--run-dir", loop.run, "--out", tmp_path / "x")
    assert r.exit_code != 0 and "--fleet-url" in r.output
    r = cli("train", "--from-fleet", "iris", "--fleet-url", loop.fleet.url, "--token", "wrong", "--run-dir", loop.run,
            "--out", tmp_path / "x", "--pseudo-label")
    assert r.exit_code != 0 and "401" in r.output and "Traceback" not in r.output
