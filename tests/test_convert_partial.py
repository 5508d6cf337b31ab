"""Partial bundles: a failing target ships no file and is named; the passing ones are kept; --strict keeps
all-or-nothing; the runtime never selects an artifact that failed validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeml.bundle import read_manifest
from edgeml.convert.options import Precision
from edgeml.errors import BundleError

sys.path.insert(0, str(Path(__file__).parent))

FACTORY, SPEC = "tiny_models:tiny_mlp", "input:float32:?x6"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("partial") / "cal.npz"
    np.savez(path, input=np.random.default_rng(2).normal(size=(100, 6)).astype(np.float32))
    return path


def zero_weights(path: Path) -> None:
    """Break a saved ONNX artifact the way a bad quantizer would: every weight matrix set to 0."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim >= 2:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), init.name))
    onnx.save(model, str(path))


@pytest.fixture()
def onnx_exporter(monkeypatch):
    """Patch the ONNX exporter per precision: 'zero' writes a broken artifact, 'crash' raises mid-export."""
    from edgeml.convert.exporters.onnx import EXPORTER

    original = EXPORTER.export
    plan: dict[Precision, str] = {}

    def export(ctx, precision):
        what = plan.get(precision)
        if what == "crash":
            (ctx.bundle_root / "artifacts").mkdir(exist_ok=True)
            (ctx.bundle_root / "artifacts" / f"model.{precision.value}.onnx").write_bytes(b"half-written")
            raise RuntimeError("converter blew up\n  deep inside")
        artifact = original(ctx, precision)
        if what == "zero":
            zero_weights(ctx.bundle_root / artifact.path)
        return artifact

    monkeypatch.setattr(EXPORTER, "export", export)
    return plan


def convert(run_cli, data, out, precisions, *extra):
    return run_cli("convert", FACTORY, "--input", SPEC, "--calibration", data, "--out", out, "--name", "r",
                   "--version", "1", "--precision", precisions, *extra)


def test_a_broken_int8_artifact_is_not_shipped_and_the_passing_ones_are(run_cli, data, tmp_path, onnx_exporter):
    from edgeml.runtime import load

    onnx_exporter[Precision.INT8] = "zero"
    result = convert(run_cli, data, tmp_path / "b", "fp32,int8")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.error_lines) == 1
    assert result.error_lines[0].startswith("Error: 1 of 2 requested targets failed and were not shipped: onnx/int8 (")
    table = result.stdout.replace("│", " ")
    assert "onnx   │ int8" in result.stdout or " int8 " in table
    assert "FAIL," in table and " pass " in table  # the table shows both
    manifest = read_manifest(tmp_path / "b")
    assert [a.key for a in manifest.artifacts] == ["onnx/fp32"]
    [failed] = manifest.failed
    assert (failed.key, failed.stage) == ("onnx/int8", "validation") and "relative error" in failed.reason
    assert failed.validation["passed"] is False
    assert sorted(p.name for p in (tmp_path / "b" / "artifacts").iterdir()) == ["model.fp32.onnx"]
    assert load(tmp_path / "b").info.precision == "fp32"  # int8 comes first by default: it is not there
    with pytest.raises(BundleError, match="no int8 artifact|no artifact"):
        load(tmp_path / "b", precision="int8")
    shown = run_cli("inspect", tmp_path / "b")
    assert shown.exit_code == 0 and "failed targets (not shipped)" in shown.stdout
    assert "validation" in shown.stdout.split("failed targets")[1]


def test_a_converter_crash_is_the_target_failure_reason(run_cli, data, tmp_path, onnx_exporter):
    onnx_exporter[Precision.FP16] = "crash"
    result = convert(run_cli, data, tmp_path / "b", "fp32,fp16", "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "onnx/fp16 (RuntimeError: converter blew up)" in result.error_lines[0]
    summary = json.loads(result.stdout)
    assert summary["complete"] is False and [a["precision"] for a in summary["artifacts"]] == ["fp32"]
    assert summary["failed"][0]["stage"] == "export"
    assert not (tmp_path / "b" / "artifacts" / "model.fp16.onnx").exists()  # its half-written file is gone
    assert read_manifest(tmp_path / "b").failed[0].reason == "RuntimeError: converter blew up"


def test_strict_writes_nothing_when_a_target_fails(run_cli, data, tmp_path, onnx_exporter):
    onnx_exporter[Precision.INT8] = "zero"
    result = convert(run_cli, data, tmp_path / "b", "fp32,int8", "--strict")
    assert result.exit_code != 0 and len(result.error_lines) == 1
    assert "--strict: nothing written" in result.error_lines[0] and "onnx/int8" in result.error_lines[0]
    assert list(tmp_path.iterdir()) == []  # no bundle, no staging directory


def test_no_passing_target_writes_nothing(run_cli, data, tmp_path, onnx_exporter):
    onnx_exporter[Precision.FP32] = "crash"
    onnx_exporter[Precision.INT8] = "zero"
    result = convert(run_cli, data, tmp_path / "b", "fp32,int8")
    assert result.exit_code != 0 and "no target passed, nothing written" in result.error_lines[0]
    assert list(tmp_path.iterdir()) == []


def test_the_runtime_never_selects_a_failed_artifact(run_cli, data, tmp_path, onnx_exporter):
    from edgeml.manifest import Manifest
    from edgeml.runtime import load
    from edgeml.runtime.selection import Preference, select_artifact

    onnx_exporter[Precision.INT8] = "zero"
    result = convert(run_cli, data, tmp_path / "b", "fp32,int8", "--allow-degraded")
    assert result.exit_code == 0, result.output  # kept on request, marked failed
    manifest = read_manifest(tmp_path / "b")
    assert manifest.artifact("onnx", "int8").validation["passed"] is False
    assert load(tmp_path / "b", precision="int8,fp32").info.precision == "fp32"
    with pytest.raises(BundleError, match="onnx/int8 on onnxruntime: failed validation at conversion"):
        load(tmp_path / "b", precision="int8")
    # A bundle whose artifacts all failed is refused with the failures named (the fleet agent selects the same way).
    broken = Manifest.from_dict({**manifest.to_dict(), "artifacts": [manifest.artifact("onnx", "int8").to_dict()]})
    with pytest.raises(BundleError, match="no artifact that passed validation at conversion .*onnx/int8: output"):
        select_artifact(broken, Preference.resolve())


def test_a_backend_error_on_the_validation_data_is_one_error_line(run_cli, tmp_path):
    """An ONNX source whose feature axis is dynamic in the graph but 4 wide in its weights: validation
    data with 5 features fails inside onnxruntime while the source reference is computed."""
    from onnx import TensorProto, helper, numpy_helper, save_model

    weights = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "k"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])], [weights])
    source = tmp_path / "mm.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    np.savez(tmp_path / "wide.npz", x=np.ones((8, 5), dtype=np.float32))
    out = tmp_path / "mm-1"
    result = run_cli("convert", source, "--name", "mm", "--version", "1", "--out", out, "--task", "regression",
                     "--validation", tmp_path / "wide.npz")
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert len(result.error_lines) == 1, result.output
    assert "x float32 [8, 5]" in result.error_lines[0] and "validation data" in result.error_lines[0]
    assert not out.exists()
