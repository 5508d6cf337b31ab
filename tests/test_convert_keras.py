"""Keras sources to all three formats; --list-formats; the docs table; a missing converter named by its extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeml.cli import cli
from formats_fixtures import artifacts, image_data, run_convert, torch_cnn, keras_cnn

DOCS = Path(__file__).resolve().parents[1] / "docs" / "convert.md"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("keras")


@pytest.mark.slow
def test_keras_model_converts_to_every_format_and_precision(workdir):
    model = keras_cnn(workdir)
    calib = image_data(workdir, 48, key="image", shape=(8, 8, 1))
    code, output, summary = run_convert(str(model), "--out", str(workdir / "k"), "--name", "k", "--version", "1",
                                        "--to", "onnx,tflite,openvino", "--precision", "fp32,fp16,int8",
                                        "--calibration", str(calib))
    assert code == 0, output
    arts = artifacts(summary)
    assert len(arts) == 9 and all(a["passed"] for a in arts.values())
    manifest = json.loads((workdir / "k" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "keras"
    assert manifest["inputs"][0]["name"] == "image" and manifest["inputs"][0]["shape"] == [None, 8, 8, 1]
    tflite = next(a for a in manifest["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8")
    assert tflite["details"]["converter"] == "TFLiteConverter" and tflite["details"]["quantization"] == "full_integer"


@pytest.mark.slow
def test_savedmodel_directory_is_a_source(workdir):
    import keras

    model = keras.saving.load_model(keras_cnn(workdir))
    model.export(str(workdir / "sm"), verbose=False)
    code, output, summary = run_convert(str(workdir / "sm"), "--out", str(workdir / "smb"), "--name", "sm", "--version", "1",
                                        "--to", "tflite,openvino")
    assert code == 0, output
    assert all(a["passed"] for a in summary["artifacts"])


def test_list_formats_prints_the_registry_table_without_a_source():
    result = CliRunner().invoke(cli, ["convert", "--list-formats"])
    assert result.exit_code == 0, result.output
    for word in ("pytorch", "sklearn", "keras", "onnx", "tflite", "openvino", "fp16", "int8", "trees"):
        assert word in result.output


def test_to_help_lists_every_registered_format():
    from edgeml.convert.exporters import format_names

    result = CliRunner().invoke(cli, ["convert", "--help"])
    assert all(name in result.output for name in format_names())
    assert "--max-accuracy-drop" in result.output and "--list-formats" in result.output


def test_docs_compatibility_table_matches_the_registry():
    from edgeml.convert.compat import markdown_table

    assert markdown_table() in DOCS.read_text()


def test_unknown_format_is_refused_naming_the_supported_ones(tmp_path):
    result = CliRunner().invoke(cli, ["convert", "m.onnx", "--name", "a", "--version", "1", "--to", "coreml"])
    assert result.exit_code != 0 and "onnx, tflite, openvino" in result.output


@pytest.mark.slow
def test_missing_converter_names_the_extra(workdir, monkeypatch):
    model = torch_cnn(workdir)
    monkeypatch.setitem(sys.modules, "onnx2tf", None)  # as if onnx2tf were not installed
    out = workdir / "missing"
    code, output, _ = run_convert(str(model), "--out", str(out), "--name", "cnn", "--version", "1", "--to", "tflite")
    assert code != 0
    assert "onnx2tf is not installed" in output and "pip install 'edgeml[convert]'" in output
    assert "Traceback" not in output and not out.exists()


def test_importing_the_device_backends_pulls_no_framework():
    import subprocess

    code = ("import sys, edgeml.runtime, edgeml.runtime.backends.litert, edgeml.runtime.backends.openvino;"
            "from edgeml.runtime.backends import get_backend; get_backend('litert'); get_backend('openvino');"
            "bad=[m for m in ('tensorflow','torch','onnx','keras','nncf') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_litert_session_runs_without_tensorflow(workdir):
    """The litert backend loads and runs a .tflite in a process that never imports tensorflow."""
    import subprocess

    tflite = next(Path(workdir).rglob("model.fp32.tflite"), None)
    if tflite is None:
        pytest.skip("no tflite artifact built in this run")
    code = ("import sys, numpy as np; from edgeml.runtime.backends import get_backend, BackendOptions;"
            f"s=get_backend('litert').load(r'{tflite}', BackendOptions(threads=1));"
            "s.run({n: np.zeros((2,8,8,1), np.float32) for n in s.input_names});"
            "sys.exit('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
