"""Bad input: one `Error: ...` line, non-zero exit, no traceback, nothing left behind."""

from __future__ import annotations

import subprocess
import sys

import joblib
import numpy as np
import pytest

from edgeml.bundle import read_manifest


def assert_clean_failure(result, out_parent, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert len(result.error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.error_lines[0], result.error_lines[0]
    leftovers = [p.name for p in out_parent.iterdir() if p.name.startswith(".") or p.name == "out"]
    assert leftovers == [], f"half-written output left behind: {leftovers}"


def convert(run_cli, source, tmp_path, *extra):
    return run_cli("convert", source, "--out", tmp_path / "out", "--name", "m", "--version", "1", *extra)


def test_missing_source(run_cli, tmp_path):
    assert_clean_failure(convert(run_cli, tmp_path / "nope.joblib", tmp_path), tmp_path, "not found")


@pytest.mark.parametrize("suffix, says", [(".joblib", "cannot unpickle"), (".onnx", "not a valid ONNX model"),
                                          (".pt2", "not a readable torch.export"), (".pt", "not a TorchScript archive")])
def test_corrupt_source(run_cli, tmp_path, suffix, says):
    bad = tmp_path / f"model{suffix}"
    bad.write_bytes(b"\x00garbage" * 10)
    assert_clean_failure(convert(run_cli, bad, tmp_path, "--input", "x:float32:?x4"), tmp_path, says)


def test_unknown_source_kind_names_the_supported_ones(run_cli, tmp_path):
    src = tmp_path / "model.h5x"
    src.write_text("?")
    assert_clean_failure(convert(run_cli, src, tmp_path), tmp_path, "Supported sources", "scikit-learn", "PyTorch", "ONNX")


def test_pickle_that_is_not_an_estimator(run_cli, tmp_path):
    joblib.dump({"weights": [1, 2]}, tmp_path / "dict.joblib")
    assert_clean_failure(convert(run_cli, tmp_path / "dict.joblib", tmp_path), tmp_path, "not a scikit-learn estimator", "RandomForest")


def test_estimator_skl2onnx_cannot_convert_names_what_is_supported(run_cli, tmp_path):
    from sklearn.semi_supervised import LabelSpreading

    X = np.random.default_rng(0).normal(size=(30, 3))
    joblib.dump(LabelSpreading().fit(X, np.arange(30) % 2), tmp_path / "ls.joblib")
    assert_clean_failure(convert(run_cli, tmp_path / "ls.joblib", tmp_path), tmp_path, "LabelSpreading", "supported:")


def test_calibration_with_wrong_input_names(run_cli, tabular, tmp_path):
    import pandas as pd

    pd.read_csv(tabular.csv).drop(columns=["city"]).to_csv(tmp_path / "c.csv", index=False)
    assert_clean_failure(convert(run_cli, tabular.model, tmp_path, "--calibration", tmp_path / "c.csv"), tmp_path,
                         "'city'", "lacks column")


def test_calibration_with_wrong_shape(run_cli, digits_cnn, tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((20, 1, 7, 7), np.float32))
    assert_clean_failure(convert(run_cli, digits_cnn.pt2, tmp_path, "--calibration", tmp_path / "c.npz"), tmp_path,
                         "'x'", "[?, 1, 8, 8]", "[20, 1, 7, 7]")


def test_calibration_with_wrong_dtype(run_cli, digits_cnn, tmp_path):
    np.savez(tmp_path / "c.npz", x=np.full((20, 1, 8, 8), "a"))
    assert_clean_failure(convert(run_cli, digits_cnn.pt2, tmp_path, "--calibration", tmp_path / "c.npz"), tmp_path,
                         "'x'", "float32", "strings")


def test_static_int8_needs_enough_calibration(run_cli, digits_cnn, tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((8, 1, 8, 8), np.float32))
    result = convert(run_cli, digits_cnn.pt2, tmp_path, "--precision", "int8", "--calibration", tmp_path / "c.npz",
                     "--validation", digits_cnn.validation)
    assert_clean_failure(result, tmp_path, "at least 16 calibration samples")


def test_existing_output_is_refused_unless_forced(run_cli, digits_cnn, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = convert(run_cli, digits_cnn.pt2, tmp_path, "--validation", digits_cnn.validation)
    assert result.exit_code != 0 and "--force" in result.error_lines[0]
    assert (out / "keep.txt").read_text() == "mine"
    forced = convert(run_cli, digits_cnn.pt2, tmp_path, "--validation", digits_cnn.validation, "--force")
    assert forced.exit_code == 0, forced.output
    assert not (out / "keep.txt").exists() and read_manifest(out).name == "m"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_signing_key_fails_before_any_work(run_cli, digits_cnn, tmp_path):
    key = tmp_path / "k.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    result = convert(run_cli, digits_cnn.pt2, tmp_path, "--sign-key", key)
    assert result.exit_code != 0 and "not a PEM ed25519 private key" in result.error_lines[0]
    assert "loading source" not in result.stderr  # refused before loading the model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key"]


def test_public_key_given_as_signing_key(run_cli, digits_cnn, keys, tmp_path):
    result = convert(run_cli, digits_cnn.pt2, tmp_path, "--sign-key", keys[1])
    assert result.exit_code != 0 and "private key" in result.error_lines[0]


def test_bad_option_values(run_cli, digits_cnn, tmp_path):
    assert "choose from" in convert(run_cli, digits_cnn.pt2, tmp_path, "--precision", "fp8").error_lines[0]
    assert "NAME:DTYPE:SHAPE" in convert(run_cli, digits_cnn.pt2, tmp_path, "--input", "x:float32").error_lines[0]
    bad_name = run_cli("convert", digits_cnn.pt2, "--out", tmp_path / "o", "--name", "../evil", "--version", "1")
    assert "--name" in bad_name.error_lines[0]


def test_failed_validation_fails_with_a_per_output_report_and_writes_nothing(run_cli, digits_cnn, tmp_path):
    result = convert(run_cli, digits_cnn.pt2, tmp_path, "--precision", "fp32,fp16", "--validation", digits_cnn.validation,
                     "--atol", "0", "--rtol", "0")
    assert_clean_failure(result, tmp_path, "validation failed", "onnx/fp16", "output 'output': max abs error")


def test_allow_degraded_keeps_failed_artifacts_marked(run_cli, digits_cnn, tmp_path):
    result = convert(run_cli, digits_cnn.pt2, tmp_path, "--precision", "fp16", "--validation", digits_cnn.validation,
                     "--atol", "0", "--rtol", "0", "--allow-degraded")
    assert result.exit_code == 0, result.output
    assert "FAIL" in result.stdout
    v = read_manifest(tmp_path / "out").artifact("onnx", "fp16").validation
    assert v["passed"] is False and v["failures"]


def test_no_traceback_from_the_real_console_script(tmp_path):
    out = subprocess.run([sys.executable, "-m", "edgeml", "convert", str(tmp_path / "x.onnx"), "--name", "a", "--version", "1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"Error: source {tmp_path / 'x.onnx'} not found"
