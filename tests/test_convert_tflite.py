"""TFLite/LiteRT export: fp32, fp16, dynamic-range and full-integer int8, validated on the LiteRT interpreter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from formats_fixtures import artifacts, digits_mlp, image_data, random_forest, run_convert, torch_cnn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tflite")


@pytest.fixture(scope="module")
def cnn_bundle(workdir):
    model = torch_cnn(workdir)
    calib = image_data(workdir, 64)
    code, output, summary = run_convert(str(model), "--out", str(workdir / "cnn-1"), "--name", "cnn", "--version", "1",
                                        "--to", "tflite", "--precision", "fp32,fp16,int8", "--calibration", str(calib))
    assert code == 0, output
    return workdir / "cnn-1", summary


def test_cnn_converts_to_every_precision_and_passes_on_litert(cnn_bundle):
    bundle, summary = cnn_bundle
    arts = artifacts(summary)
    assert set(arts) == {"tflite/fp32", "tflite/fp16", "tflite/int8"}
    assert all(a["passed"] for a in arts.values())
    assert arts["tflite/fp16"]["size"] < arts["tflite/fp32"]["size"]
    assert arts["tflite/int8"]["size"] < arts["tflite/fp16"]["size"]


def test_manifest_records_backend_full_integer_int8_and_dynamic_batch(cnn_bundle):
    bundle, _ = cnn_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    entries = {(a["format"], a["precision"]): a for a in manifest["artifacts"]}
    int8 = entries[("tflite", "int8")]
    assert int8["backend"] == "litert"
    assert int8["details"]["quantization"] == "full_integer"
    assert int8["details"]["calibration_samples"] >= 16
    assert all(e["details"].get("dynamic_batch") for e in entries.values())
    assert (bundle / "artifacts" / "model.int8.tflite").is_file()


def test_litert_backend_keeps_nchw_input_names_and_resizes_batch(cnn_bundle):
    from edgeml.runtime.backends import BackendOptions, get_backend

    bundle, _ = cnn_bundle
    session = get_backend("litert").load(bundle / "artifacts" / "model.fp32.tflite", BackendOptions(threads=1))
    assert session.input_names == ["input"] and session.output_names == ["output"]
    for batch in (1, 5, 2):
        out = session.run({"input": np.zeros((batch, 1, 8, 8), np.float32)})
        assert out["output"].shape == (batch, 5)


def test_int8_without_calibration_is_dynamic_range(workdir):
    model = workdir / "cnn.pt2"
    code, output, summary = run_convert(str(model), "--out", str(workdir / "dr"), "--name", "cnn", "--version", "1",
                                        "--to", "tflite", "--precision", "int8")
    assert code == 0, output
    manifest = json.loads((workdir / "dr" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["details"]["quantization"] == "dynamic_range"


def test_sklearn_mlp_pipeline_converts_through_standard_operators(workdir):
    model, data = digits_mlp(workdir)
    code, output, summary = run_convert(str(model), "--out", str(workdir / "mlp"), "--name", "mlp", "--version", "1",
                                        "--to", "tflite", "--precision", "fp32,fp16,int8", "--calibration", str(data))
    assert code == 0, output
    arts = artifacts(summary)
    assert all(a["passed"] for a in arts.values())
    assert abs(arts["tflite/int8"]["metric_delta"]) <= 0.02


def test_tree_ensemble_is_refused_before_any_work(workdir):
    model = random_forest(workdir)
    out = workdir / "rf"
    code, output, _ = run_convert(str(model), "--out", str(out), "--name", "rf", "--version", "1", "--to", "onnx,tflite")
    assert code != 0
    assert "Error: tflite/fp32 is not supported" in output and "TreeEnsembleClassifier" in output
    assert "Traceback" not in output
    assert not out.exists()


def test_too_little_calibration_data_says_how_many_samples_are_needed(workdir):
    model = workdir / "cnn.pt2"
    calib = image_data(workdir, 8, "small.npz")
    val = image_data(workdir, 20, "val.npz")
    out = workdir / "small"
    code, output, _ = run_convert(str(model), "--out", str(out), "--name", "cnn", "--version", "1", "--to", "tflite",
                                  "--precision", "int8", "--calibration", str(calib), "--validation", str(val))
    assert code != 0
    assert "needs at least 16 calibration samples (got 8)" in output
    assert "Traceback" not in output
    assert not out.exists()
