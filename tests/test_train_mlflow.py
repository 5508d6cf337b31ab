"""`edgeml train --mlflow URI [--register NAME]` and `edgeml convert models:/NAME/VERSION`.

Against a real local MLflow tracking server started here (mlflow-skinny's `mlflow server`, SQLite
backend, proxied artifacts), a plain `file:` directory store and a `sqlite:///` store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pandas as pd
import pytest

from fleet_fixtures import free_port, wait_until

mlflow = pytest.importorskip("mlflow")

TRAIN = ("--cv", "2", "--jobs", "1")


def _health(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
        return r.status == 200


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """`mlflow server` on a free port with a SQLite store; its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    exe = shutil.which("mlflow") or sys.executable
    cmd = [exe] if exe.endswith("mlflow") else [sys.executable, "-m", "mlflow"]
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [*cmd, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True)  # its own process group: the uvicorn worker goes down with it
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or _health(url), timeout=180, what="the MLflow server")
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        yield url
    finally:
        _stop_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _stop_group(proc, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _stop_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def server_run(run_cli, tracking_server, tmp_path_factory):
    """An iris classifier trained, logged and registered on the server."""
    root = tmp_path_factory.mktemp("server-run")
    result = run_cli("train", "--dataset", "iris", "--model", "logistic_regression", *TRAIN, "--out", root / "run",
                     "--mlflow", tracking_server, "--register", "iris-clf", "--json")
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def _validation_frame(run_dir):
    return pd.read_csv(run_dir / "validation.csv").drop(columns=["label"])


@pytest.mark.slow
def test_server_run_has_params_metrics_artifacts_and_a_pyfunc_model(server_run, tracking_server):
    root, summary = server_run
    logged = summary["mlflow"]
    mlflow.set_tracking_uri(tracking_server)
    run = mlflow.MlflowClient().get_run(logged["run_id"])
    assert run.data.params["model"] == "logistic_regression" and run.data.params["cv"] == "2"
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["evaluation"]["metrics"]["accuracy"])
    assert "robustness_noise_1.0" in run.data.metrics
    assert run.data.tags["edgeml.data_sha256"] == summary["data"]["sha256"]
    files = {a.path for a in mlflow.artifacts.list_artifacts(run_id=logged["run_id"], artifact_path="edgeml-run")}
    assert {"edgeml-run/edgeml-run.json", "edgeml-run/model.joblib", "edgeml-run/report.html"} <= files
    model = mlflow.pyfunc.load_model(logged["model_uri"])
    frame = _validation_frame(root / "run")
    expected = pd.read_csv(root / "run" / "validation.csv")["label"].to_numpy()
    assert np.mean(np.asarray(model.predict(frame)) == expected) >= 0.8  # the trained model, CSV input as read


@pytest.mark.slow
def test_registration_and_convert_from_the_registry_records_lineage(server_run, tracking_server, run_cli, tmp_path, monkeypatch):
    root, summary = server_run
    assert summary["mlflow"]["registered"] == "models:/iris-clf/1"
    mlflow.set_tracking_uri(tracking_server)
    registered = mlflow.pyfunc.load_model("models:/iris-clf/1")
    assert len(registered.predict(_validation_frame(root / "run"))) == len(_validation_frame(root / "run"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    result = run_cli("convert", "models:/iris-clf/1", "--to", "onnx", "--precision", "fp32", "--out", tmp_path / "bundle")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert (manifest["name"], manifest["version"]) == ("iris-clf", "1")  # named after the registered model
    assert manifest["lineage"] == {"source_uri": "models:/iris-clf/1", "tracking_uri": tracking_server,
                                   "mlflow_run_id": summary["mlflow"]["run_id"], "train_run_id": summary["run_id"],
                                   "data_sha256": summary["data"]["sha256"]}
    assert manifest["metrics"]["run_id"] == summary["run_id"]  # the run's training metrics came along
    assert manifest["artifacts"][0]["validation"]["passed"]


def test_file_store_works_without_environment_variables(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_cli("train", "--dataset", "iris", "--model", "decision_tree", *TRAIN, "--out", "run",
                     "--mlflow", "file:./mlruns", "--register", "tree", "--json")
    assert result.exit_code == 0, result.output
    logged = json.loads(result.stdout)["mlflow"]
    assert (tmp_path / "mlruns").is_dir() and logged["registered"] == "models:/tree/1"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")  # absolute: this process-wide setting outlives chdir
    try:
        assert len(mlflow.pyfunc.load_model(logged["model_uri"]).predict(_validation_frame(tmp_path / "run"))) > 0
    finally:
        mlflow.set_tracking_uri(previous)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:./mlruns")
    converted = run_cli("convert", logged["model_uri"], "--to", "onnx", "--precision", "fp32", "--name", "tree",
                        "--version", "1", "--out", "bundle")
    assert converted.exit_code == 0, converted.output
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["lineage"]["source_uri"] == logged["model_uri"]


@pytest.mark.slow
def test_torch_model_logged_to_sqlite_loads_with_pyfunc(run_cli, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sqlalchemy")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("train", "--dataset", "iris", "--model", "mlp", "--epochs", "5", *TRAIN, "--out", tmp_path / "run",
                     "--mlflow", uri, "--json")
    assert result.exit_code == 0, result.output
    logged = json.loads(result.stdout)["mlflow"]
    mlflow.set_tracking_uri(uri)
    flavors = mlflow.models.get_model_info(logged["model_uri"]).flavors
    assert "pytorch" in flavors and "python_function" in flavors
    from edgeml.samples import load_npz

    x = load_npz(tmp_path / "run" / "validation.npz")["input"][:4]
    out = np.asarray(mlflow.pyfunc.load_model(logged["model_uri"]).predict(x))
    assert out.shape == (4, 3) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4)  # class probabilities


def test_unreachable_server_fails_before_training(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "iris", "--model", "decision_tree", *TRAIN, "--out", tmp_path / "run",
                     "--mlflow", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.error_lines) == 1 and "MLflow at http://127.0.0.1:" in result.error_lines[0]
    assert "loading data" not in result.stderr and not (tmp_path / "run").exists()


def test_register_needs_mlflow(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "iris", "--model", "decision_tree", "--out", tmp_path / "run", "--register", "x")
    assert result.exit_code != 0 and result.error_lines == [
        "Error: --register NAME needs --mlflow URI (the tracking server or store holding the registry)"]


def test_convert_from_the_registry_errors(run_cli, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_cli("convert", "models:/iris-clf/1", "--to", "onnx", "--out", tmp_path / "b")
    assert result.exit_code != 0 and "set MLFLOW_TRACKING_URI" in result.error_lines[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    result = run_cli("convert", "models:/nothing/3", "--to", "onnx", "--out", tmp_path / "b")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.error_lines) == 1 and "models:/nothing/3" in result.error_lines[0]
    assert not (tmp_path / "b").exists()


def test_manifest_lineage_round_trips_and_is_parsed_strictly():
    from edgeml.errors import BundleError
    from edgeml.manifest import Manifest

    base = {"format_version": 1, "name": "m", "version": "1", "created_at": "now", "task": "classification",
            "inputs": [], "outputs": []}
    lineage = {"source_uri": "models:/m/1", "mlflow_run_id": "abc", "data_sha256": None}
    manifest = Manifest.from_dict({**base, "lineage": lineage})
    assert manifest.lineage == lineage and Manifest.from_dict(manifest.to_dict()).lineage == lineage
    assert Manifest.from_dict(base).lineage is None  # bundles made before lineage existed still read
    with pytest.raises(BundleError, match="lineage"):
        Manifest.from_dict({**base, "lineage": {"run": {"nested": 1}}})
