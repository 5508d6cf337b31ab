"""TFLite for PyTorch transformers through litert-torch (onnx2tf cannot take them), and converter
crashes as one `Error:` line naming the target."""

from __future__ import annotations

import pytest

from arch_fixtures import arch_dir, convert_args, tiny_bert, tiny_resnet, tiny_vit  # noqa: F401
from conftest import convert_or_fail
from edgeml.bundle import read_manifest

pytest.importorskip("litert_torch")


def test_encoder_converts_to_tflite_at_every_precision_with_litert_torch(run_cli, tiny_bert, tmp_path):
    bundle = convert_or_fail(run_cli, *convert_args(tiny_bert, tmp_path / "bert", "tflite", "fp32,fp16,int8"))
    m = read_manifest(bundle)
    assert {a.precision for a in m.artifacts} == {"fp32", "fp16", "int8"} and not m.failed
    fp32 = m.artifact("tflite", "fp32")
    for a in m.artifacts:
        assert a.details["converter"].startswith("litert-torch"), a.details
        assert a.validation["passed"] and a.validation["cosine_mean"] >= 0.98
    assert m.artifact("tflite", "int8").details["quantization"] == "dynamic_range"
    assert m.artifact("tflite", "int8").size < fp32.size * 0.75
    assert m.artifact("tflite", "fp16").size < fp32.size * 0.8
    assert m.inputs[0].name == "input_ids" and m.inputs[0].dtype == "int64"  # the device feeds what it fed ONNX


def test_vit_converts_to_tflite_with_litert_torch(run_cli, tiny_vit, tmp_path):
    bundle = convert_or_fail(run_cli, *convert_args(tiny_vit, tmp_path / "vit", "tflite", "fp32"))
    a = read_manifest(bundle).artifact("tflite", "fp32")
    assert a.details["converter"] == "litert-torch" and a.details["fixed_batch"] == 1
    assert a.validation["passed"] and a.validation["top1_agreement"] >= 0.99


def test_a_converter_crash_is_an_error_line_naming_the_target(run_cli, tiny_vit, tmp_path, monkeypatch):
    from edgeml.convert.exporters import tflite

    def crash(ctx, precision):
        raise RuntimeError("boom inside the converter\nline two")

    monkeypatch.setitem(tflite.CONVERTERS, "litert-torch", crash)
    result = run_cli("convert", *convert_args(tiny_vit, tmp_path / "crash", "tflite,onnx", "fp32"))
    assert result.exit_code != 0
    assert "Error:" in result.output and "Traceback" not in result.output
    assert "the litert-torch converter crashed at tflite/fp32: boom inside the converter" in result.output
    m = read_manifest(tmp_path / "crash")  # the passing target is kept (partial bundle)
    assert [a.key for a in m.artifacts] == ["onnx/fp32"] and m.failed[0].format == "tflite"


def test_a_flatbuffer_the_interpreter_cannot_run_is_refused_at_export(run_cli, tiny_vit, tmp_path, monkeypatch):
    from edgeml.convert.exporters import tflite

    monkeypatch.setitem(tflite.CONVERTERS, "litert-torch", lambda ctx, precision: (b"TFL3 not a model", {"fixed_batch": 1}))
    result = run_cli("convert", *convert_args(tiny_vit, tmp_path / "bad", "tflite", "fp32"))
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "the LiteRT interpreter cannot run the converted model" in result.output
    assert not (tmp_path / "bad" / "artifacts").exists() or not list((tmp_path / "bad" / "artifacts").iterdir())


def test_full_integer_int8_the_interpreter_refuses_falls_back_to_dynamic_range(run_cli, tiny_resnet, tmp_path, monkeypatch):
    from edgeml.convert.exporters import tflite

    real = tflite._smoke_run

    def xnnpack_refuses_full_integer(path, ctx, details):
        if details.get("quantization") == "full_integer":  # as XNNPACK does for ResNet-18's full-integer graph
            raise tflite.ConversionError("the LiteRT interpreter cannot run the converted model: "
                                         "Node number 40 (TfLiteXNNPackDelegate) failed to prepare.")
        real(path, ctx, details)

    monkeypatch.setattr(tflite, "_smoke_run", xnnpack_refuses_full_integer)
    bundle = convert_or_fail(run_cli, *convert_args(tiny_resnet, tmp_path / "res", "tflite", "int8"))
    a = read_manifest(bundle).artifact("tflite", "int8")
    assert a.details["quantization"] == "dynamic_range" and a.validation["passed"]
    assert [t["recipe"] for t in a.details["attempts"]] == ["full_integer", "dynamic_range"]
    assert "failed to prepare" in a.details["attempts"][0]["result"]
