"""OpenVINO IR export: fp32, fp16 (compressed weights), int8 with NNCF, validated on OpenVINO Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from formats_fixtures import artifacts, digits_mlp, image_data, random_forest, run_convert, torch_cnn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("openvino")


@pytest.fixture(scope="module")
def cnn_bundle(workdir):
    model = torch_cnn(workdir)
    calib = image_data(workdir, 64)
    code, output, summary = run_convert(str(model), "--out", str(workdir / "cnn-1"), "--name", "cnn", "--version", "1",
                                        "--to", "openvino", "--precision", "fp32,fp16,int8", "--calibration", str(calib))
    assert code == 0, output
    return workdir / "cnn-1", summary


def test_cnn_converts_to_every_precision_and_passes_on_openvino(cnn_bundle):
    bundle, summary = cnn_bundle
    arts = artifacts(summary)
    assert set(arts) == {"openvino/fp32", "openvino/fp16", "openvino/int8"}
    assert all(a["passed"] for a in arts.values())
    assert arts["openvino/fp32"]["max_abs_error"] < 1e-4  # parity: the f32 hint keeps the CPU off bf16


def test_ir_directory_is_one_artifact_with_xml_and_bin(cnn_bundle):
    bundle, _ = cnn_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert int8["path"] == "artifacts/model.int8.openvino" and int8["backend"] == "openvino"
    assert {f["path"].rsplit("/", 1)[1] for f in int8["files"]} == {"model.xml", "model.bin"}
    assert int8["details"]["quantization"] == "nncf_ptq"


def test_openvino_backend_sets_precision_hint_and_threads(cnn_bundle):
    from edgeml.runtime.backends import BackendOptions, get_backend

    import openvino as ov

    bundle, _ = cnn_bundle
    # The CPU plugin honours an f16 hint only where the CPU computes in FP16 (AVX512-FP16/AMX); elsewhere
    # (e.g. AVX2-only AMD EPYC) it runs f32, which is what the fp16 artifact then gets.
    fp16_hint = "float16" if "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "float32"
    for precision, hint in (("fp32", "float32"), ("fp16", fp16_hint)):
        session = get_backend("openvino").load(bundle / f"artifacts/model.{precision}.openvino", BackendOptions(1, precision))
        assert hint in str(session._compiled.get_property("INFERENCE_PRECISION_HINT"))
        assert int(session._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        assert session.run({"input": np.zeros((3, 1, 8, 8), np.float32)})["output"].shape == (3, 5)


def test_sklearn_mlp_with_accuracy_control(workdir):
    model, data = digits_mlp(workdir)
    code, output, summary = run_convert(str(model), "--out", str(workdir / "mlp"), "--name", "mlp", "--version", "1",
                                        "--to", "openvino", "--precision", "fp32,fp16,int8", "--calibration", str(data),
                                        "--max-accuracy-drop", "0.01")
    assert code == 0, output
    assert all(a["passed"] for a in artifacts(summary).values())
    manifest = json.loads((workdir / "mlp" / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert int8["details"]["quantization"] == "nncf_accuracy_control"
    assert int8["validation"]["metric_delta"] >= -0.02


def test_int8_without_calibration_compresses_weights(workdir):
    code, output, _ = run_convert(str(workdir / "cnn.pt2"), "--out", str(workdir / "wc"), "--name", "cnn", "--version", "1",
                                  "--to", "openvino", "--precision", "int8")
    assert code == 0, output
    manifest = json.loads((workdir / "wc" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["details"]["quantization"] == "weights_only"


def test_tree_ensemble_is_refused_naming_the_operator(workdir):
    out = workdir / "rf"
    code, output, _ = run_convert(str(random_forest(workdir)), "--out", str(out), "--name", "rf", "--version", "1", "--to", "openvino")
    assert code != 0 and "TreeEnsembleClassifier" in output and "openvino/fp32" in output
    assert "Traceback" not in output and not out.exists()


def test_too_little_calibration_data_is_refused(workdir):
    out = workdir / "small"
    code, output, _ = run_convert(str(workdir / "cnn.pt2"), "--out", str(out), "--name", "cnn", "--version", "1",
                                  "--to", "openvino", "--precision", "int8",
                                  "--calibration", str(image_data(workdir, 4, "small.npz")),
                                  "--validation", str(image_data(workdir, 20, "val.npz")))
    assert code != 0 and "at least 16 calibration samples (got 4)" in output
    assert "Traceback" not in output and not out.exists()
