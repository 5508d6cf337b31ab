"""ONNX files as sources: validated against ONNX Runtime running the original file."""

from __future__ import annotations

import numpy as np

from conftest import convert_or_fail
from edgeml.bundle import read_manifest


def export_mlp(path):
    import torch

    from tiny_models import TinyMLP

    torch.manual_seed(0)
    torch.onnx.export(TinyMLP(6, 3).eval(), (torch.randn(2, 6),), str(path), input_names=["features"],
                      output_names=["scores"], dynamic_axes={"features": {0: "n"}}, dynamo=False)


def test_onnx_file_converts_at_every_precision(run_cli, tmp_path):
    export_mlp(tmp_path / "mlp.onnx")
    np.savez(tmp_path / "cal.npz", features=np.random.default_rng(1).normal(size=(200, 6)).astype(np.float32))
    bundle = convert_or_fail(run_cli, tmp_path / "mlp.onnx", "--out", tmp_path / "b", "--name", "mlp", "--version", "3",
                             "--precision", "fp32,fp16,int8", "--calibration", tmp_path / "cal.npz")
    m = read_manifest(bundle)
    assert m.source["kind"] == "onnx" and len(m.source["sha256"]) == 64
    assert m.inputs[0].name == "features" and m.inputs[0].shape == [None, 6]
    assert m.task == "classification"  # one [N, K>1] float output
    fp32 = m.artifact("onnx", "fp32").validation
    assert fp32["max_abs_error"] < 1e-5 and fp32["samples"] == 40  # 20% of the calibration data held out
    assert m.artifact("onnx", "int8").details["quantization"] == "dynamic"


def test_task_can_be_overridden_to_regression(run_cli, tmp_path):
    export_mlp(tmp_path / "mlp.onnx")
    bundle = convert_or_fail(run_cli, tmp_path / "mlp.onnx", "--out", tmp_path / "b", "--name", "mlp", "--version", "1",
                             "--task", "regression")
    m = read_manifest(bundle)
    assert m.task == "regression" and m.artifacts[0].validation["top1_agreement"] is None
    assert m.reference["prediction"]["kind"] == "numeric"
