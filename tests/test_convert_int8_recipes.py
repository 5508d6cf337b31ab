"""int8 picks a recipe per graph (transformer / CNN) on ONNX Runtime and OpenVINO, meets the task's
bound on tiny real architectures, and falls back to the tools' remedies when the first recipe misses."""

from __future__ import annotations

import numpy as np
import pytest

from arch_fixtures import arch_dir, convert_args, tiny_bert, tiny_resnet, tiny_vit  # noqa: F401
from conftest import convert_or_fail
from edgeml.bundle import read_manifest


def _int8(bundle, fmt):
    return read_manifest(bundle).artifact(fmt, "int8")


def test_encoder_int8_uses_the_transformer_recipes_and_keeps_cosine(run_cli, tiny_bert, tmp_path):
    bundle = convert_or_fail(run_cli, *convert_args(tiny_bert, tmp_path / "bert", "onnx,openvino", "int8"))
    onnx, ov = _int8(bundle, "onnx"), _int8(bundle, "openvino")
    assert onnx.details["graph_family"] == ov.details["graph_family"] == "transformer"
    assert onnx.details["recipe"] == "dynamic" and onnx.details["quantization"] == "dynamic"
    assert ov.details["recipe"] == "nncf_ptq_transformer" and ov.details["model_type"] == "transformer"
    for a in (onnx, ov):
        assert a.validation["passed"] and a.validation["cosine_mean"] >= 0.98, a.validation
        assert a.details["attempts"][0]["passed"] and a.details["recipe_selection"] == "first recipe meeting the bound"


def test_vit_int8_is_dynamic_on_onnx_and_transformer_on_openvino(run_cli, tiny_vit, tmp_path):
    bundle = convert_or_fail(run_cli, *convert_args(tiny_vit, tmp_path / "vit", "onnx,openvino", "int8"))
    onnx, ov = _int8(bundle, "onnx"), _int8(bundle, "openvino")
    # A ViT has a Conv (patch embedding), but attention decides: not static QDQ (the 0.06-agreement trap).
    assert onnx.details["graph_family"] == "transformer" and onnx.details["quantization"] == "dynamic"
    assert ov.details["attempts"][0]["recipe"] == "nncf_ptq_transformer"  # NNCF's transformer type first
    for a in (onnx, ov):  # the kept recipe (first or a remedy) meets the bound
        assert a.validation["passed"] and a.validation["top1_agreement"] >= 0.95, a.validation


def test_resnet_int8_is_per_channel_static_qdq(run_cli, tiny_resnet, tmp_path):
    bundle = convert_or_fail(run_cli, *convert_args(tiny_resnet, tmp_path / "res", "onnx", "fp32,int8"))
    m = read_manifest(bundle)
    a = m.artifact("onnx", "int8")
    assert a.details["graph_family"] == "cnn" and a.details["quantization"] == "static"
    assert a.details["per_channel"] is True and a.details["format"] == "QDQ"
    assert a.validation["passed"] and a.validation["top1_agreement"] >= 0.95
    assert a.size < m.artifact("onnx", "fp32").size / 1.8


def _zero_weights(path) -> None:
    """Break a quantized ONNX file: every int8 weight initializer set to zero."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model(str(path))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.int8 and arr.ndim >= 2:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), init.name))
    onnx.save_model(model, str(path))


def test_onnx_falls_back_when_the_first_recipe_misses_the_bound(run_cli, tiny_bert, tmp_path, monkeypatch):
    from edgeml.convert.quantize import onnx_recipes

    real = onnx_recipes.apply

    def broken_first(recipe, src, out, calibration):
        real(recipe, src, out, calibration)
        if recipe.name == "dynamic":  # the transformer family's first recipe
            _zero_weights(out)

    monkeypatch.setattr(onnx_recipes, "apply", broken_first)
    bundle = convert_or_fail(run_cli, *convert_args(tiny_bert, tmp_path / "fb", "onnx", "int8"))
    a = _int8(bundle, "onnx")
    attempts = a.details["attempts"]
    assert attempts[0]["recipe"] == "dynamic" and attempts[0]["passed"] is False and "cosine" in attempts[0]["result"]
    assert attempts[-1]["passed"] is True and a.details["recipe"] == attempts[-1]["recipe"] != "dynamic"
    assert a.validation["passed"] and a.validation["cosine_mean"] >= 0.98


def test_openvino_falls_back_when_the_first_recipe_misses_the_bound(run_cli, tiny_vit, tmp_path, monkeypatch):
    from edgeml.convert.quantize import nncf_int8

    first = nncf_int8.RECIPES["nncf_ptq_transformer"]

    def calibrated_on_zeros(nncf, model, inputs):  # a bad recipe: activation ranges taken from blank images
        zeros = nncf.Dataset([{k: np.zeros_like(v) for k, v in feeds.items()} for feeds, _ in inputs.validation])
        return nncf.quantize(model, zeros, subset_size=8, model_type=nncf.ModelType.TRANSFORMER)

    monkeypatch.setitem(nncf_int8.RECIPES, "nncf_ptq_transformer",
                        nncf_int8.NNCFRecipe(first.name, calibrated_on_zeros, first.details))
    bundle = convert_or_fail(run_cli, *convert_args(tiny_vit, tmp_path / "ovfb", "openvino", "int8"))
    a = _int8(bundle, "openvino")
    attempts = a.details["attempts"]
    assert attempts[0]["recipe"] == "nncf_ptq_transformer" and attempts[0]["passed"] is False, attempts
    assert attempts[-1]["passed"] is True and a.details["recipe"] == attempts[-1]["recipe"]
    assert a.validation["passed"]


def test_no_recipe_meeting_the_bound_ships_nothing_and_says_what_was_tried(run_cli, tiny_bert, tmp_path, monkeypatch):
    from edgeml.convert.quantize import onnx_recipes

    real = onnx_recipes.apply

    def always_broken(recipe, src, out, calibration):
        real(recipe, src, out, calibration)
        _zero_weights(out)

    monkeypatch.setattr(onnx_recipes, "apply", always_broken)
    result = run_cli("convert", *convert_args(tiny_bert, tmp_path / "none", "onnx", "fp32,int8"))
    assert result.exit_code != 0 and "onnx/int8" in result.output and "Traceback" not in result.output
    m = read_manifest(tmp_path / "none")
    assert [a.key for a in m.artifacts] == ["onnx/fp32"]
    assert [(f.format, f.precision) for f in m.failed] == [("onnx", "int8")]
