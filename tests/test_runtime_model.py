"""edgeml.runtime.load / Model.predict: input forms, checks, integrity and artifact selection."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml.errors import BundleError, DataError, IntegrityError, UsageError
from edgeml.runtime import Model, load
from runtime_fixtures import N_FEATURES, bundles, copy_bundle, edit_manifest, samples


@pytest.fixture(scope="module")
def mlp() -> Model:
    return load(bundles().mlp, precision="fp32", threads=1)


@pytest.fixture(scope="module")
def tabular() -> Model:
    b = bundles()
    return load(b.tabular, verify_key=b.public_key, threads=1)


# -- input forms ---------------------------------------------------------------------------------

def test_predict_array_matches_the_source_model_reference(mlp):
    inputs, reference = samples(bundles().mlp)
    out = mlp.predict(inputs["input"])
    assert set(out) == {"label", "probabilities"}
    np.testing.assert_array_equal(out["label"], reference["label"])
    np.testing.assert_allclose(out["probabilities"], reference["probabilities"], atol=1e-4)


def test_predict_accepts_dict_list_and_one_sample_without_batch_axis(mlp):
    x = samples(bundles().mlp)[0]["input"][:3]
    expected = mlp.predict(x)["probabilities"]
    np.testing.assert_allclose(mlp.predict({"input": x})["probabilities"], expected)
    np.testing.assert_allclose(mlp.predict(x.tolist())["probabilities"], expected, atol=1e-6)
    one = mlp.predict(x[0])["probabilities"]
    assert one.shape == (1, 2)
    np.testing.assert_allclose(one[0], expected[0])


def test_float64_and_int_inputs_are_converted_safely(mlp):
    x = samples(bundles().mlp)[0]["input"][:4]
    np.testing.assert_allclose(mlp.predict(x.astype(np.float64))["probabilities"], mlp.predict(x)["probabilities"], atol=1e-6)
    ints = np.arange(2 * N_FEATURES, dtype=np.int64).reshape(2, N_FEATURES) % 3
    np.testing.assert_allclose(mlp.predict(ints)["probabilities"], mlp.predict(ints.astype(np.float32))["probabilities"])


def test_predict_records_keyed_by_feature_name(tabular):
    inputs, reference = samples(bundles().tabular)
    records = [{"age": float(a), "income level": float(i), "city": str(c)}
               for a, i, c in zip(inputs["age"][:, 0], inputs["income_level"][:, 0], inputs["city"][:, 0])]
    out = tabular.predict(records)
    np.testing.assert_array_equal(out["label"], reference["label"])
    np.testing.assert_allclose(out["probabilities"], reference["probabilities"], atol=1e-4)
    np.testing.assert_allclose(tabular.predict(inputs)["probabilities"], out["probabilities"], atol=1e-6)
    single = tabular.predict(records[0])
    np.testing.assert_allclose(single["probabilities"][0], out["probabilities"][0], atol=1e-6)
    columns = {"age": inputs["age"][:, 0], "income level": inputs["income_level"][:, 0], "city": inputs["city"][:, 0]}
    np.testing.assert_allclose(tabular.predict(columns)["probabilities"], out["probabilities"], atol=1e-6)


def test_missing_numeric_value_in_a_record_is_imputed(tabular):
    out = tabular.predict([{"age": None, "income level": 6.0, "city": "oslo"}])
    assert np.isfinite(out["probabilities"]).all()


# -- bad inputs ----------------------------------------------------------------------------------

def test_wrong_shape_error_names_input_expected_and_received(mlp):
    with pytest.raises(DataError) as exc:
        mlp.predict(np.zeros((2, N_FEATURES - 1), np.float32))
    msg = exc.value.message
    assert "'input'" in msg and f"[?, {N_FEATURES}]" in msg and f"[2, {N_FEATURES - 1}]" in msg


def test_wrong_dtype_error_names_input_expected_and_received(mlp, tabular):
    with pytest.raises(DataError) as exc:
        mlp.predict(np.full((1, N_FEATURES), "a"))
    assert "'input'" in exc.value.message and "float32" in exc.value.message and "string" in exc.value.message
    inputs = samples(bundles().tabular)[0]
    with pytest.raises(DataError) as exc:
        tabular.predict({**inputs, "city": np.ones((len(inputs["city"]), 1))})
    assert "'city'" in exc.value.message and "string" in exc.value.message and "float64" in exc.value.message


def test_missing_and_unknown_inputs_are_named(mlp, tabular):
    with pytest.raises(DataError, match="unknown input.*'extra'"):
        mlp.predict({"input": np.zeros((1, N_FEATURES), np.float32), "extra": np.zeros(1)})
    inputs = samples(bundles().tabular)[0]
    with pytest.raises(DataError, match="missing input.*city"):
        tabular.predict({"age": inputs["age"], "income_level": inputs["income_level"]})
    with pytest.raises(DataError, match="record 1 has no feature 'city'"):
        tabular.predict([{"age": 1.0, "income level": 2.0, "city": "oslo"}, {"age": 1.0, "income level": 2.0}])
    with pytest.raises(DataError, match="input 'age' expects float32: received strings such as 'old'"):
        tabular.predict([{"age": "old", "income level": 2.0, "city": "oslo"}])


def test_records_are_refused_for_a_model_without_feature_names(mlp):
    with pytest.raises(DataError, match="records"):
        mlp.predict([{"a": 1.0}])


# -- info ----------------------------------------------------------------------------------------

def test_info_inputs_and_outputs_describe_the_loaded_artifact(mlp, tabular):
    assert (mlp.info.name, mlp.info.version, mlp.info.backend, mlp.info.format, mlp.info.precision) == \
        ("mlp", "1.0", "onnxruntime", "onnx", "fp32")
    assert [s.name for s in mlp.inputs] == ["input"] and mlp.inputs[0].shape == [None, N_FEATURES]
    assert [s.name for s in mlp.outputs] == ["label", "probabilities"]
    assert tabular.info.signature_verified and not mlp.info.signature_verified
    assert [s.feature_names for s in tabular.inputs] == [["age"], ["income level"], ["city"]]


# -- integrity -----------------------------------------------------------------------------------

def test_tampered_artifact_does_not_load_even_without_a_key(tmp_path):
    bundle = copy_bundle(bundles().mlp, tmp_path)
    artifact = bundle / "artifacts" / "model.fp32.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="model.fp32.onnx"):
        load(bundle, precision="fp32")


def test_tampered_manifest_fails_signature_check(tmp_path):
    b = bundles()
    bundle = copy_bundle(b.tabular, tmp_path)
    edit_manifest(bundle, lambda m: m.update(version="3"))
    with pytest.raises(IntegrityError, match="signature"):
        load(bundle, verify_key=b.public_key)


def test_wrong_key_and_unsigned_bundle_are_refused_with_a_key():
    b = bundles()
    with pytest.raises(IntegrityError, match="signature"):
        load(b.tabular, verify_key=b.other_public_key)
    with pytest.raises(IntegrityError, match="not signed"):
        load(b.mlp, verify_key=b.public_key)


def test_artifact_path_outside_the_bundle_is_refused(tmp_path):
    bundle = copy_bundle(bundles().mlp, tmp_path)
    edit_manifest(bundle, lambda m: m["artifacts"][0].update(path="../../etc/passwd"))
    with pytest.raises(IntegrityError, match="outside the bundle"):
        load(bundle, precision="fp32")


# -- selection -----------------------------------------------------------------------------------

def _set_int8_slower(bundle, slower: bool) -> None:
    def edit(m):
        for a in m["artifacts"]:
            if a["precision"] == "int8":
                a["details"]["slower_than_fp32"] = slower
    edit_manifest(bundle, edit)


def test_auto_prefers_int8_unless_it_was_measured_slower(tmp_path):
    bundle = copy_bundle(bundles().mlp, tmp_path)
    _set_int8_slower(bundle, False)
    assert load(bundle).info.precision == "int8"
    _set_int8_slower(bundle, True)
    assert load(bundle).info.precision == "fp32"


def test_artifacts_that_failed_validation_are_never_chosen(tmp_path):
    bundle = copy_bundle(bundles().mlp, tmp_path)
    _set_int8_slower(bundle, False)
    edit_manifest(bundle, lambda m: [a["validation"].update(passed=a["precision"] == "fp32") for a in m["artifacts"]])
    assert load(bundle).info.precision == "fp32"
    with pytest.raises(BundleError, match="int8.*failed validation"):
        load(bundle, precision="int8")


def test_preference_order_from_argument_and_environment(monkeypatch, tmp_path):
    bundle = copy_bundle(bundles().mlp, tmp_path)
    _set_int8_slower(bundle, False)
    assert load(bundle, precision="fp32,int8").info.precision == "fp32"
    assert load(bundle, precision=["fp16", "int8"]).info.precision == "int8"
    monkeypatch.setenv("EDGEML_PRECISION_ORDER", "fp32")
    assert load(bundle).info.precision == "fp32"
    monkeypatch.setenv("EDGEML_BACKEND_ORDER", "litert")
    with pytest.raises(BundleError, match="no artifact this device can run"):
        load(bundle)


def test_unknown_backend_or_precision_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown backend 'tensorrt'"):
        load(bundles().mlp, backend="tensorrt")
    with pytest.raises(UsageError, match="unknown precision 'int4'"):
        load(bundles().mlp, precision="int4")
    with pytest.raises(UsageError, match="threads"):
        load(bundles().mlp, threads=0)


def test_not_a_bundle_is_a_bundle_error(tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        load(tmp_path / "missing")
    with pytest.raises(BundleError, match="no manifest.json"):
        load(tmp_path)


# -- fixed-batch artifacts -----------------------------------------------------------------------

FIXED_BATCH = 2


@pytest.fixture(scope="module")
def fixed_batch_bundle(tmp_path_factory):
    """An ONNX graph y = x @ W + b whose input is pinned to [2, 4], converted into a bundle; and W, b."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeml.convert.options import ConvertOptions
    from edgeml.convert.pipeline import convert

    root = tmp_path_factory.mktemp("fixed-batch")
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])], "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [FIXED_BATCH, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [FIXED_BATCH, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "affine.onnx")
    np.savez(root / "cal.npz", x=rng.normal(size=(21, 4)).astype(np.float32))
    bundle = convert(ConvertOptions(source=str(root / "affine.onnx"), out=root / "affine-1", name="affine", version="1",
                                    calibration=root / "cal.npz", task=None, latency_runs=2)).bundle
    return bundle, w, b


@pytest.mark.parametrize("n", [1, FIXED_BATCH, 3, 7])
def test_fixed_batch_artifact_runs_any_number_of_samples_in_padded_chunks(fixed_batch_bundle, n):
    bundle, w, b = fixed_batch_bundle
    model = load(bundle)
    assert model.inputs[0].shape == [FIXED_BATCH, 4] and model.fixed_batch == FIXED_BATCH and not model.dynamic_batch
    x = np.random.default_rng(n).normal(size=(n, 4)).astype(np.float32)
    y = model.predict(x)["y"]
    assert y.shape == (n, 3)
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-5, atol=1e-5)


def test_fixed_batch_artifact_refuses_an_empty_batch_and_wrong_feature_count(fixed_batch_bundle):
    model = load(fixed_batch_bundle[0])
    with pytest.raises(DataError, match="no samples"):
        model.predict(np.zeros((0, 4), np.float32))
    with pytest.raises(DataError, match=r"'x' expects shape \[\?, 4\]"):
        model.predict(np.zeros((3, 5), np.float32))


def test_fixed_batch_recorded_in_artifact_details_is_honoured(tmp_path):
    bundle = copy_bundle(bundles().mlp, tmp_path)
    edit_manifest(bundle, lambda m: [a["details"].update(fixed_batch=4) for a in m["artifacts"] if a["precision"] == "fp32"])
    model = load(bundle, precision="fp32")
    assert model.fixed_batch == 4
    inputs, reference = samples(bundle)
    out = model.predict(inputs["input"][:10])
    np.testing.assert_array_equal(out["label"], reference["label"][:10])
    np.testing.assert_allclose(out["probabilities"], reference["probabilities"][:10], atol=1e-4)
