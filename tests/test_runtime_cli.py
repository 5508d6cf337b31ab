"""`edgeml predict` and `edgeml serve` from the command line, import purity, SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from edgeml.cli import cli
from runtime_fixtures import Client, bundles, infer_body, samples

FORBIDDEN = ("torch", "tensorflow", "sklearn", "onnx", "fastapi", "sqlalchemy", "uvicorn", "starlette")


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


# -- edgeml predict ------------------------------------------------------------------------------

def test_predict_csv_prints_a_table_of_outputs(tmp_path):
    b = bundles()
    rows = ["age,income level,city,label", "30,4.5,oslo,1", ",6.0,paris,0"]  # empty age: missing, imputed
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    code, out = run("predict", b.tabular, "--input", tmp_path / "in.csv", "--verify-key", b.public_key)
    assert code == 0, out
    assert "tabular 2 (onnx/fp32 on onnxruntime)" in out
    assert "label" in out and "probabilities" in out and "2 prediction(s)" in out
    code, out = run("predict", b.tabular, "--input", tmp_path / "in.csv", "--json")
    from edgeml.runtime import load

    expected = load(b.tabular).predict([{"age": 30.0, "income level": 4.5, "city": "oslo"},
                                        {"age": None, "income level": 6.0, "city": "paris"}])
    np.testing.assert_allclose(json.loads(out)["outputs"]["probabilities"], expected["probabilities"], rtol=1e-6)


def test_predict_npz_json_matches_reference_outputs():
    b = bundles()
    code, out = run("predict", b.mlp, "--input", b.mlp / "samples.npz", "--precision", "fp32", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["model"]["precision"] == "fp32" and result["model"]["name"] == "mlp"
    reference = samples(b.mlp)[1]
    assert result["outputs"]["label"] == reference["label"].tolist()
    np.testing.assert_allclose(result["outputs"]["probabilities"], reference["probabilities"], atol=1e-4)


def test_predict_json_records_and_oip_request(tmp_path):
    b = bundles()
    (tmp_path / "records.json").write_text(json.dumps([{"age": 30, "income level": 4.5, "city": "oslo"}]))
    code, out = run("predict", b.tabular, "--input", tmp_path / "records.json", "--json")
    assert code == 0, out
    records_result = json.loads(out)["outputs"]
    inputs = {"age": np.array([[30.0]], np.float32), "income_level": np.array([[4.5]], np.float32), "city": np.array([["oslo"]])}
    (tmp_path / "request.json").write_text(json.dumps(infer_body(inputs)))
    code, out = run("predict", b.tabular, "--input", tmp_path / "request.json", "--json")
    assert code == 0, out
    assert json.loads(out)["outputs"]["label"] == records_result["label"]


@pytest.mark.parametrize("case", ["missing column", "bad key", "not a bundle", "bad suffix"])
def test_predict_errors_are_one_line_without_traceback(tmp_path, case):
    b = bundles()
    (tmp_path / "in.csv").write_text("age,city\n30,oslo\n")
    (tmp_path / "in.txt").write_text("x")
    args = {
        "missing column": (b.tabular, "--input", tmp_path / "in.csv"),
        "bad key": (b.tabular, "--input", tmp_path / "in.csv", "--verify-key", tmp_path / "in.txt"),
        "not a bundle": (tmp_path, "--input", tmp_path / "in.csv"),
        "bad suffix": (b.mlp, "--input", tmp_path / "in.txt"),
    }[case]
    code, out = run("predict", *args)
    assert code != 0
    assert out.startswith("Error: ") and out.count("\n") == 1 and "Traceback" not in out
    expected = {"missing column": "lacks column(s) 'income level'", "bad key": "not a PEM ed25519 public key",
                "not a bundle": "no manifest.json", "bad suffix": "use .npz"}[case]
    assert expected in out


def test_serve_and_predict_help_list_their_options():
    code, out = run("serve", "--help")
    assert code == 0 and "--unix-socket" in out and "--max-batch" in out and "Open Inference Protocol" in out
    code, out = run("predict", "--help")
    assert code == 0 and "--input" in out and "--json" in out


def test_serve_refuses_a_tampered_bundle_with_one_error_line(tmp_path):
    import shutil

    bundle = shutil.copytree(bundles().mlp, tmp_path / "b")
    artifact = bundle / "artifacts" / "model.fp32.onnx"
    artifact.write_bytes(b"garbage")
    code, out = run("serve", bundle, "--precision", "fp32", "--port", "0")
    assert code != 0 and out.startswith("Error: ") and "sha256 differs" in out


# -- subprocesses: import purity and graceful shutdown -------------------------------------------

def _modules_after(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def _forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)


def test_importing_the_runtime_loads_no_heavy_framework():
    modules = _modules_after("import sys, edgeml.runtime; print(' '.join(sys.modules))")
    assert "edgeml.runtime" in modules
    assert _forbidden(modules) == []
    assert "onnxruntime" not in modules  # the engine is imported when a model needs it


def test_starting_the_serve_daemon_loads_no_heavy_framework():
    code = f"""
import sys
from edgeml.runtime.cli_serve import serve  # the command module itself
from edgeml.runtime import load
from edgeml.runtime.server import Daemon, ServeConfig
daemon = Daemon(ServeConfig(port=0))
daemon.holder.swap(load({str(bundles().tabular)!r}))
daemon.start()
import urllib.request
assert urllib.request.urlopen(daemon.url + "/v2/health/ready").status == 200
daemon.stop()
print(' '.join(sys.modules))
"""
    modules = _modules_after(code)
    assert "onnxruntime" in modules and "edgeml.runtime.server.http" in modules
    assert _forbidden(modules) == []


def _read_line(stream, deadline: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                break
            line += chunk
    return line.decode()


@pytest.mark.slow
def test_edgeml_serve_process_serves_and_stops_on_sigterm():
    b = bundles()
    proc = subprocess.Popen([sys.executable, "-m", "edgeml", "serve", str(b.tabular), "--port", "0",
                             "--verify-key", str(b.public_key)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        line = _read_line(proc.stderr, time.monotonic() + 30)
        assert "at http://" in line, line
        url = line.split(" at ")[1].split(";")[0]
        client = Client(url)
        assert client.get("/v2/health/ready") == (200, {"ready": True})
        status, body = client.post("/v2/models/tabular/infer", infer_body(samples(b.tabular)[0]))
        assert status == 200 and body["model_version"] == "2"
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        rest = proc.stderr.read().decode()
        assert "stopped" in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
