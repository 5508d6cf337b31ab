"""edgeml.compare: the one output comparison of convert validation, the install smoke test and shadow."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml.compare import Tolerance, allowed_mismatches, check_golden, classes, compare_values, outputs_agree
from edgeml.convert.options import DEFAULT_TOLERANCES, Precision

# The defaults `edgeml convert` applies (one definition, read here rather than copied).
FP32 = DEFAULT_TOLERANCES[Precision.FP32]
INT8 = DEFAULT_TOLERANCES[Precision.INT8]


def test_values_pass_within_atol_plus_rtol_times_the_largest_reference_value():
    ref = np.array([[10.0, -2.0]], np.float32)
    allowed = 1e-4 + 1e-3 * 10.0
    assert compare_values(ref, ref + allowed * 0.9, FP32).passed
    check = compare_values(ref, ref + allowed * 1.1, FP32)
    assert not check.passed and check.allowed == pytest.approx(allowed)
    assert compare_values(ref, ref + allowed * 1.1, FP32, slack=2.0).passed


def test_nan_never_passes_and_unenforced_values_are_reported():
    ref = np.zeros((2, 2), np.float32)
    assert not compare_values(ref, np.full_like(ref, np.nan), FP32).passed
    check = compare_values(ref, ref + 5, INT8)
    assert check.passed and check.allowed is None and check.max_abs_error == 5


def test_classes_of_scores_labels_and_values():
    assert classes(np.array([[0.1, 0.9], [0.8, 0.2]])).tolist() == [1, 0]
    assert classes(np.array(["cat", "dog"])).tolist() == ["cat", "dog"]
    assert classes(np.array([1.5, 2.5])) is None  # regression values: no prediction to agree on
    assert classes(np.array([[0.3], [0.7]])) is None


def test_golden_samples_float_outputs_get_twice_the_tolerance():
    ref = {"y": np.array([[1.0, 2.0]], np.float32)}
    allowed = 2 * (1e-4 + 1e-3 * 2.0)
    assert check_golden(ref, {"y": ref["y"] + allowed * 0.9}, FP32) is None
    assert check_golden(ref, {"y": ref["y"] + allowed * 1.1}, FP32) == f"output 'y': max abs error {allowed * 1.1:.3g} > {allowed:.3g}"


def test_golden_samples_int8_labels_allow_the_validated_rate_plus_one():
    labels = np.arange(16) % 3
    assert allowed_mismatches(16, 0.95) == 1
    one_off = labels.copy()
    one_off[0] = 2
    assert check_golden({"label": labels}, {"label": one_off}, INT8) is None
    one_off[1] = 2
    assert check_golden({"label": labels}, {"label": one_off}, INT8) == "output 'label': 2 of 16 golden samples disagree"


def test_golden_samples_int8_regression_values_are_not_compared_as_text():
    """An int8 regressor's outputs differ slightly; like validation, they are not enforced."""
    ref = np.array([1.25, 2.5, 3.75], np.float32)
    assert check_golden({"y": ref}, {"y": ref + 0.01}, INT8) is None


def test_golden_samples_missing_or_misshapen_outputs_fail():
    ref = {"y": np.zeros((4, 2), np.float32)}
    assert check_golden(ref, {}, FP32) == "output 'y' is missing"
    assert check_golden(ref, {"y": np.zeros((8, 2), np.float32)}, FP32) == "output 'y' has shape [8, 2], expected [4, 2]"
    assert check_golden(ref, {"y": np.zeros(8, np.float32)}, FP32) is None  # same values, flattened layout


def test_tolerance_reads_what_a_manifest_records():
    assert Tolerance.from_dict({"atol": 0.001, "rtol": 0.02, "min_agreement": 0.98, "max_metric_drop": 0.01}) == \
        Tolerance(0.001, 0.02, 0.98, 0.01)
    assert Tolerance.from_dict({}).atol is None


def test_shadow_agreement_per_request():
    scores = np.array([[0.2, 0.8]], np.float32)
    assert outputs_agree({"p": scores}, {"p": np.array([[0.4, 0.6]], np.float32)})
    assert not outputs_agree({"p": scores}, {"p": np.array([[0.6, 0.4]], np.float32)})
    assert outputs_agree({"y": np.array([1.0])}, {"y": np.array([1.005])})
    assert not outputs_agree({"y": np.array([1.0])}, {"y": np.array([1.1])})
    assert outputs_agree({"label": np.array([3]), "p": scores}, {"label": np.array([3]), "p": scores[:, ::-1]}, "label")
    assert not outputs_agree({"y": np.zeros(2)}, {"y": np.zeros(3)})
    assert not outputs_agree({"a": np.zeros(1)}, {"b": np.zeros(1)})


def test_convert_validation_uses_the_same_bound():
    from edgeml.convert.options import Task
    from edgeml.convert.validate import TaskInfo, validate

    ref = {"y": np.array([[10.0], [2.0]], np.float32)}
    allowed = 1e-4 + 1e-3 * 10.0
    info = TaskInfo(Task.REGRESSION, None, None, None)
    assert validate(ref, {"y": ref["y"] + allowed * 0.9}, None, info, FP32, None, "t").passed
    report = validate(ref, {"y": ref["y"] + allowed * 1.1}, None, info, FP32, None, "t")
    assert not report.passed and report.outputs[0].allowed == pytest.approx(allowed)
