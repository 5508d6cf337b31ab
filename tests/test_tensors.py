"""The one tensor-coercion rule set (edgeml.tensors), and its parity across convert, Model.predict and serve."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml import tensors
from edgeml.errors import DataError
from edgeml.schema import TensorSpec


def refused(value, target: str) -> str:
    with pytest.raises(DataError) as exc:
        tensors.cast(value, target, "x")
    assert exc.value.reason == "bad_input"
    return exc.value.message


# -- allowed casts -------------------------------------------------------------------------------

@pytest.mark.parametrize("value,target,expected", [
    (np.array([1.5, -2.0], np.float64), "float32", [1.5, -2.0]),  # narrowing float, in range
    (np.array([1.5], np.float32), "float64", [1.5]),
    (np.array([65504.0]), "float16", [65504.0]),  # the largest float16 fits
    (np.array([3, -4], np.int64), "float32", [3.0, -4.0]),
    (np.array([2**31 - 1, -2**31], np.int64), "int32", [2**31 - 1, -2**31]),  # narrowing int, in range
    (np.array([255], np.int64), "uint8", [255]),
    (np.array([7], np.uint8), "int64", [7]),
    (np.array([True, False]), "int8", [1, 0]),
    (np.array([True, False]), "float32", [1.0, 0.0]),
    (np.array([True]), "bool", [True]),
    (np.array([b"caf\xc3\xa9"]), "string", ["café"]),
    (np.array(["oslo", None, float("nan")], dtype=object), "string", ["oslo", "", ""]),  # missing text is ""
    (np.array([1, 2.5], dtype=object), "float32", [1.0, 2.5]),
])
def test_allowed_casts_keep_the_values(value, target, expected):
    out = tensors.cast(value, target, "x")
    assert out.dtype == tensors.target_dtype(target) or (target == "string" and out.dtype.kind == "U")
    assert out.tolist() == expected


def test_same_dtype_is_returned_unchanged_without_a_copy():
    a = np.arange(4, dtype=np.float32)
    assert tensors.cast(a, "float32", "x") is a
    s = np.array(["a", "bc"])
    assert tensors.cast(s, "string", "x") is s


def test_nan_and_inf_inputs_are_values_not_overflows():
    out = tensors.cast(np.array([np.nan, np.inf, -np.inf, 1.0]), "float16", "x")
    assert out.dtype == np.float16
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == -np.inf and out[3] == 1.0


# -- refusals ------------------------------------------------------------------------------------

def test_an_integer_that_does_not_fit_is_refused_never_wrapped():
    assert refused(np.array([0, 2**40], np.int64), "int32") == \
        "input 'x' expects int32: value 1099511627776 does not fit (int32 holds -2147483648..2147483647)"
    assert refused(np.array([-1]), "uint8") == "input 'x' expects uint8: value -1 does not fit (uint8 holds 0..255)"
    assert "value 18446744073709551615 does not fit (int64 holds" in refused(np.array([2**64 - 1], np.uint64), "int64")


def test_a_finite_float_that_would_become_inf_is_refused():
    assert refused(np.array([1.0, 1e6]), "float16") == \
        "input 'x' expects float16: value 1000000.0 does not fit (float16 holds -65504..65504)"
    assert refused(np.array([1e39]), "float32") == \
        "input 'x' expects float32: value 1e+39 does not fit (float32 holds -3.40282e+38..3.40282e+38)"
    assert refused(np.array([70000], np.int64), "float16") == \
        "input 'x' expects float16: value 70000 does not fit (float16 holds -65504..65504)"
    # A NaN elsewhere in the array does not hide the overflow.
    assert "value 1000000.0 does not fit" in refused(np.array([np.nan, 1e6]), "float16")


def test_floats_are_never_cast_to_integers_even_when_integral():
    assert refused(np.array([1.0, 2.0]), "int64") == \
        "input 'x' expects int64: received float64 values, which are not cast to integers (round and cast them first)"


def test_bool_inputs_take_only_booleans():
    assert refused(np.array([0, 1]), "bool") == "input 'x' expects bool: received int64 values; a bool input takes only booleans"


def test_strings_and_numbers_do_not_convert_into_each_other():
    assert refused(np.array(["1.5", "old"]), "float32") == \
        "input 'x' expects float32: received strings such as 'old', which are not converted to numbers"
    assert refused(np.array([1.5]), "string") == "input 'x' expects string: received float64 values, which are not converted to text"
    assert refused(np.array(["a", 3], dtype=object), "string") == \
        "input 'x' expects string: received int values such as 3, which are not converted to text"
    assert "received strings such as 'a'" in refused(np.array([1.0, "a"], dtype=object), "float32")
    assert "received None (a missing value)" in refused(np.array([1.0, None], dtype=object), "float32")
    assert "received bytes that are not UTF-8 text" in refused(np.array([b"\xff"]), "string")


def test_check_dtype_applies_the_same_rules_to_a_declared_type():
    tensors.check_dtype(np.dtype(np.int64), np.dtype(np.float32), "x", "INT64 data")  # allowed: no error
    with pytest.raises(DataError) as exc:
        tensors.check_dtype(np.dtype(str), np.dtype(np.float32), "x", "BYTES data")
    assert exc.value.message == "input 'x' expects float32: received BYTES data, which are not converted to numbers"


# -- fixed-batch chunking ------------------------------------------------------------------------

def test_fixed_batch_is_the_smallest_fixed_axis_0():
    assert tensors.fixed_batch([TensorSpec("a", "float32", [None, 3])]) is None
    assert tensors.fixed_batch([TensorSpec("a", "float32", [4, 3]), TensorSpec("b", "float32", [2, 1])]) == 2


def test_run_in_chunks_pads_the_last_chunk_and_cuts_the_padding_off():
    calls = []

    def run(feeds):
        calls.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2}

    x = np.arange(7, dtype=np.float32).reshape(7, 1)
    out = tensors.run_in_chunks(run, {"x": x}, 3, pad=True)
    assert calls == [3, 3, 3] and out["y"].tolist() == (x * 2).tolist()
    calls.clear()
    assert tensors.run_in_chunks(run, {"x": x}, 3, pad=False)["y"].shape == (7, 1) and calls == [3, 3, 1]


# -- parity: the same value is refused with the same message by convert, Model.predict and serve ---

def _onnx_model(path, elem_type: int) -> None:
    """x [N, 2] of `elem_type` -> y = float(x) [N, 2]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "cast",
        [helper.make_tensor_value_info("x", elem_type, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


PARITY = [
    # model input dtype, good calibration data, the value that does not fit, its OIP datatype, message
    ("int32", np.arange(40, dtype=np.int32).reshape(20, 2), np.array([[2**40, 0]], np.int64), "INT64",
     "input 'x' expects int32: value 1099511627776 does not fit (int32 holds -2147483648..2147483647)"),
    ("float16", np.linspace(-1, 1, 40, dtype=np.float16).reshape(20, 2), np.array([[1e6, 0.0]]), "FP64",
     "input 'x' expects float16: value 1000000.0 does not fit (float16 holds -65504..65504)"),
]


@pytest.mark.parametrize("dtype,good,bad,datatype,message", PARITY, ids=[p[0] for p in PARITY])
def test_a_value_that_does_not_fit_is_refused_alike_by_convert_predict_and_serve(
        run_cli, tmp_path, dtype, good, bad, datatype, message):
    from onnx import TensorProto

    from edgeml.runtime import load
    from edgeml.runtime.server import Daemon, ServeConfig
    from runtime_fixtures import Client

    source = tmp_path / "model.onnx"
    _onnx_model(source, TensorProto.INT32 if dtype == "int32" else TensorProto.FLOAT16)
    np.savez(tmp_path / "good.npz", x=good)
    np.savez(tmp_path / "bad.npz", x=np.concatenate([good.astype(bad.dtype), bad]))

    # (a) edgeml convert, the value in --calibration or --validation: one Error line, nothing written.
    for flag, role in (("--calibration", "calibration"), ("--validation", "validation")):
        out = tmp_path / f"refused-{role}"
        result = run_cli("convert", source, "--out", out, "--name", "m", "--version", "1", "--precision", "fp32",
                         flag, tmp_path / "bad.npz")
        assert result.exit_code != 0
        assert result.error_lines == [f"Error: {role} data bad.npz: {message}"], result.output
        assert "Traceback" not in result.output and not out.exists()

    bundle = tmp_path / "m-1"
    result = run_cli("convert", source, "--out", bundle, "--name", "m", "--version", "1", "--precision", "fp32",
                     "--calibration", tmp_path / "good.npz")
    assert result.exit_code == 0, result.output
    model = load(bundle, threads=1)
    assert model.inputs[0].dtype == dtype
    np.testing.assert_array_equal(model.predict(good)["y"], good.astype(np.float32))

    # (b) Model.predict
    with pytest.raises(DataError) as exc:
        model.predict({"x": bad})
    assert exc.value.message == message

    # (c) edgeml serve: 400 with {"error": message}; the daemon keeps serving
    daemon = Daemon(ServeConfig(port=0))
    daemon.holder.swap(model)
    daemon.start()
    try:
        client = Client(daemon.url)
        tensor = {"name": "x", "shape": list(bad.shape), "datatype": datatype, "data": bad.tolist()}
        assert client.post("/v2/models/m/infer", {"inputs": [tensor]}) == (400, {"error": message})
        ok = {"name": "x", "shape": [1, 2], "datatype": datatype, "data": [[1, 0]]}
        status, body = client.post("/v2/models/m/infer", {"inputs": [ok]})
        assert status == 200 and body["outputs"][0]["data"] == [1.0, 0.0]
        client.close()
    finally:
        daemon.stop()
