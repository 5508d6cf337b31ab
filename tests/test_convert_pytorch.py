"""PyTorch sources: ExportedProgram, TorchScript and module:factory with weights."""

from __future__ import annotations

import json

import numpy as np

from conftest import convert_or_fail
from edgeml.bundle import read_manifest


def artifact_keys(bundle):
    return {(a.format, a.precision) for a in read_manifest(bundle).artifacts}


def test_exported_program_converts_at_every_precision_and_keeps_accuracy(signed_cnn_bundle, digits_cnn):
    m = read_manifest(signed_cnn_bundle)
    assert artifact_keys(signed_cnn_bundle) == {("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8")}
    assert m.task == "classification"
    assert m.inputs[0].shape == [None, 1, 8, 8]  # dynamic batch kept
    for a in m.artifacts:
        v = a.validation
        assert v["passed"] and v["samples"] == 397
        assert v["metric"] == "accuracy"
        assert abs(v["metric_source"] - digits_cnn.accuracy) < 1e-9
        assert v["metric_delta"] >= -0.01, (a.key, v)
    fp32 = m.artifact("onnx", "fp32")
    assert fp32.validation["max_abs_error"] < 1e-4
    assert m.artifact("onnx", "int8").details["quantization"] == "static"  # a conv graph
    assert m.artifact("onnx", "int8").size < fp32.size / 2.5
    assert m.artifact("onnx", "fp16").size < fp32.size * 0.6


def test_torchscript_needs_and_uses_an_input_spec(run_cli, digits_cnn, tmp_path):
    base = ["convert", digits_cnn.torchscript, "--out", tmp_path / "ts", "--name", "ts", "--version", "1",
            "--validation", digits_cnn.validation]
    missing = run_cli(*base)
    assert missing.exit_code != 0 and "--input" in missing.output
    assert not (tmp_path / "ts").exists()
    bundle = convert_or_fail(run_cli, *base[1:], "--input", "input:float32:?x1x8x8")
    m = read_manifest(bundle)
    assert m.inputs[0].name == "input" and m.inputs[0].shape == [None, 1, 8, 8]
    assert m.source["pytorch_format"] == "torchscript"
    assert m.artifacts[0].validation["top1_agreement"] == 1.0


def test_factory_with_weights_file(run_cli, digits_cnn, tmp_path):
    bundle = convert_or_fail(run_cli, digits_cnn.factory, "--weights", digits_cnn.weights, "--input", "input:float32:?x1x8x8",
                             "--out", tmp_path / "f", "--name", "f", "--version", "1", "--validation", digits_cnn.validation,
                             "--precision", "fp32,int8", "--calibration", digits_cnn.calibration)
    m = read_manifest(bundle)
    # Same weights as the trained model: same accuracy as the ExportedProgram.
    assert abs(m.artifact("onnx", "fp32").validation["metric_source"] - digits_cnn.accuracy) < 1e-9


def test_factory_with_wrong_weights_is_an_error(run_cli, tmp_path):
    import torch

    from tiny_models import TinyMLP

    torch.save(TinyMLP(4, 2).state_dict(), tmp_path / "w.pt")
    result = run_cli("convert", "tiny_models:tiny_mlp", "--weights", tmp_path / "w.pt", "--input", "x:float32:?x6",
                     "--out", tmp_path / "o", "--name", "m", "--version", "1")
    assert result.exit_code != 0 and result.error_lines[0].startswith("Error: cannot load weights")
    assert "size mismatch" in result.stderr
    assert not (tmp_path / "o").exists()


def test_mlp_int8_uses_dynamic_quantization_and_synthetic_validation(run_cli, tmp_path):
    bundle = convert_or_fail(run_cli, "tiny_models:tiny_mlp", "--input", "x:float32:?x6", "--out", tmp_path / "mlp",
                             "--name", "mlp", "--version", "1", "--precision", "fp32,int8", "--json")
    m = read_manifest(bundle)
    int8 = m.artifact("onnx", "int8")
    assert int8.details["quantization"] == "dynamic"
    assert int8.validation["data"] == "synthetic"


def test_quantization_mode_and_calibration_method_can_be_chosen(run_cli, digits_cnn, tmp_path):
    bundle = convert_or_fail(run_cli, digits_cnn.pt2, "--out", tmp_path / "q", "--name", "q", "--version", "1",
                             "--precision", "int8", "--calibration", digits_cnn.calibration, "--validation", digits_cnn.validation,
                             "--calibration-method", "percentile", "--per-tensor")
    d = read_manifest(bundle).artifact("onnx", "int8").details
    assert d["calibration_method"] == "percentile" and d["per_channel"] is False and d["calibration_samples"] == 600


def test_json_output_lists_every_artifact(run_cli, digits_cnn, tmp_path):
    result = run_cli("convert", digits_cnn.pt2, "--out", tmp_path / "j", "--name", "j", "--version", "2",
                     "--precision", "fp32,fp16", "--validation", digits_cnn.validation, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [a["precision"] for a in data["artifacts"]] == ["fp32", "fp16"]
    assert all(a["passed"] and a["size"] > 0 and a["latency_ms"] > 0 for a in data["artifacts"])


def test_golden_samples_reproduce_the_source_outputs(signed_cnn_bundle):
    import onnxruntime as ort

    with np.load(signed_cnn_bundle / "samples.npz") as s:
        x, ref = s["input/x"], s["output/output"]
    sess = ort.InferenceSession(str(signed_cnn_bundle / "artifacts" / "model.fp32.onnx"))
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref, atol=1e-4)
    assert x.shape == (16, 1, 8, 8)
