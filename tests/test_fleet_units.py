"""Fleet logic that is otherwise only covered end to end: cohorts, the histogram merge and quantile, the
error-reason -> HTTP status table (and the JSON errors a client sees through the real app)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgeml.errors import BundleError, ConflictError, EdgeMLError, IntegrityError, NotFoundError, UsageError
from edgeml.histograms import HistogramSum, histogram_quantile, merge_counts

IDS = [f"dev-{i:04d}" for i in range(2000)]


# -- cohorts ------------------------------------------------------------------------------------------------
def test_cohort_positions_are_deterministic_and_stable_across_processes():
    from edgeml.fleet.rollouts.cohorts import ab_arm, position

    here = [position(d) for d in IDS[:50]]
    code = ("import json; from edgeml.fleet.rollouts.cohorts import position, ab_arm; "
            f"ids = {IDS[:50]!r}; print(json.dumps([[position(d) for d in ids], [ab_arm(d, 30) for d in ids]]))")
    # a fresh interpreter with a different hash seed: nothing may depend on Python's salted str hash
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout
    there, arms = json.loads(out)
    assert here == there and here == [position(d) for d in IDS[:50]]
    assert arms == [ab_arm(d, 30) for d in IDS[:50]]
    assert all(0.0 <= p < 1.0 for p in here) and len(set(here)) == 50


def test_waves_are_cumulative_and_monotone():
    from edgeml.fleet.rollouts.cohorts import members

    waves = [10.0, 50.0, 100.0]
    first, second, every = (set(members(IDS, waves, k)) for k in range(3))
    assert first <= second <= every == set(IDS)  # a device in the 10% wave is in the 50% wave
    assert 0.07 * len(IDS) < len(first) < 0.13 * len(IDS)
    assert 0.45 * len(IDS) < len(second) < 0.55 * len(IDS)
    # a device keeps its wave whatever the other devices are, and across rollouts with other wave lists
    assert members(IDS[:300], waves, 2) == {d: w for d, w in members(IDS, waves, 2).items() if d in IDS[:300]}
    assert set(members(IDS, [10.0, 100.0], 0)) == first


def test_the_first_wave_is_never_empty():
    from edgeml.fleet.rollouts.cohorts import canary_of, members

    few = IDS[:3]
    canary = canary_of(few)
    assert members(few, [0.001, 100.0], 0) == {canary: 0}


def test_ab_arms_split_by_percent_independently_of_the_cohort():
    from edgeml.fleet.rollouts.cohorts import ab_arm, members

    candidates = {d for d in IDS if ab_arm(d, 30) == "candidate"}
    assert 0.26 * len(IDS) < len(candidates) < 0.34 * len(IDS)
    first = set(members(IDS, [10.0, 100.0], 0))
    share = len(first & candidates) / len(first)
    assert 0.15 < share < 0.45  # the canary wave is not all one arm


# -- histogram merge ----------------------------------------------------------------------------------------
def test_merge_adds_counts_bin_by_bin():
    assert merge_counts([[1, 2, 3], [10, 0, 5], [0, 0, 1]]) == [11, 2, 9]
    assert merge_counts([]) is None


def test_merge_skips_histograms_on_other_bins():
    total = HistogramSum()
    assert total.add([1, 2, 3]) and not total.add([5, 5]) and not total.add([1, 1, 1, 1])
    assert total.tolist() == [1, 2, 3] and total.skipped == 2
    # with bounds, the same number of counts on other bounds is refused too
    lat = HistogramSum()
    assert lat.add([1, 0, 0], bounds=[0.01, 0.1])
    assert not lat.add([5, 0, 0], bounds=[0.02, 0.1])
    assert lat.add([0, 2, 1], bounds=[0.01, 0.1])
    assert lat.tolist() == [1, 2, 1] and lat.bounds == [0.01, 0.1] and lat.total == 4


def test_a_sliding_window_removes_what_it_added():
    window = HistogramSum()
    window.add([4, 6])
    window.add([1, 1])
    window.add([9, 9, 9])  # other bins: skipped when added, and skipped again when removed
    window.add([4, 6], sign=-1)
    window.add([9, 9, 9], sign=-1)
    assert window.tolist() == [1, 1]


def test_fleet_aggregates_use_the_one_merge():
    from edgeml.fleet.telemetry import aggregate, live_histograms

    def row(device: str, features: dict, prediction: list[int], lat: list[int]) -> dict:
        payload = {"requests": sum(lat), "errors": 0, "interval_s": 1.0, "features": features, "prediction": prediction,
                   "latency": {"buckets": [0.01, 0.1], "counts": lat}}
        return {"device_id": device, "payload": payload}

    rows = [row("a", {"x": [1, 2]}, [3, 0], [10, 0, 0]), row("b", {"x": [5, 5], "y": [1]}, [1, 1], [0, 10, 0]),
            row("c", {"x": [7, 7, 7]}, [2, 2], [0, 0, 0])]
    features, prediction = live_histograms(rows)
    assert features == {"x": [6, 7], "y": [1]} and prediction == [6, 3]
    agg = aggregate(rows)
    assert agg["latency_p50_s"] == pytest.approx(0.01) and agg["latency_p99_s"] == pytest.approx(0.1 - 0.09 * 0.02)


# -- quantile -----------------------------------------------------------------------------------------------
def test_quantile_interpolates_inside_the_bucket():
    bounds = [0.1, 0.2, 0.4]
    counts = [10, 20, 10, 0]  # 40 observations; +Inf bucket empty
    assert histogram_quantile(bounds, counts, 0.25) == pytest.approx(0.1)  # rank 10: top of bucket 0
    assert histogram_quantile(bounds, counts, 0.5) == pytest.approx(0.15)  # rank 20: half way into bucket 1
    assert histogram_quantile(bounds, counts, 0.875) == pytest.approx(0.3)  # rank 35: half way into bucket 2
    assert histogram_quantile(bounds, counts, 0.0) == 0.0
    assert histogram_quantile(bounds, np.array(counts), 1.0) == pytest.approx(0.4)


def test_quantile_in_the_inf_bucket_is_the_largest_bound():
    assert histogram_quantile([0.1, 0.2], [1, 0, 9], 0.99) == pytest.approx(0.2)


def test_quantile_of_an_empty_histogram_is_none_and_bad_shapes_are_refused():
    assert histogram_quantile([0.1, 0.2], [0, 0, 0], 0.5) is None
    with pytest.raises(ValueError, match="3 counts"):
        histogram_quantile([0.1, 0.2], [1, 2], 0.5)
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile([0.1], [1, 2], 1.5)


def test_psi_refuses_counts_on_other_bins():
    from edgeml.fleet.drift import drift_report, psi

    assert psi([50, 50], [50, 50]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same bins"):
        psi([50, 50], [50, 50, 50])
    reference = {"features": [{"feature": "x", "counts": [50, 50], "kind": "numeric"}]}
    report = drift_report(reference, {"x": [10, 20, 30]}, None)
    assert report["features"] == [] and report["max_psi"] == 0.0  # not comparable: no number rather than a wrong one


# -- errors -> HTTP -----------------------------------------------------------------------------------------
def test_every_reason_maps_to_one_status():
    from edgeml.fleet.api import status_for
    from edgeml.fleet.dashboard.session import Unauthorized
    from edgeml.fleet.registry import TOO_LARGE
    from edgeml.fleet.rollouts.models import SpecError

    cases = [(NotFoundError("x"), 404), (ConflictError("x"), 409), (SpecError("x"), 422), (UsageError("x"), 422),
             (BundleError("x"), 400), (IntegrityError("x"), 400), (Unauthorized("x"), 401),
             (BundleError("x", reason=TOO_LARGE), 413), (EdgeMLError("x"), 500)]
    assert [status_for(e) for e, _ in cases] == [s for _, s in cases]


@pytest.fixture()
def api(tmp_path):
    from fastapi.testclient import TestClient

    from edgeml.fleet.api import create_app
    from edgeml.fleet.service import FleetConfig, FleetService

    service = FleetService(FleetConfig(data_dir=tmp_path / "fleet", token="t0k"))
    try:
        with TestClient(create_app(service)) as client:
            client.headers["Authorization"] = "Bearer t0k"
            yield client
    finally:
        service.stop()


def test_the_api_answers_domain_errors_with_their_status_and_a_json_error(api):
    r = api.get("/api/v1/rollouts/999")
    assert (r.status_code, r.json()) == (404, {"error": "no rollout 999"})
    r = api.post("/api/v1/rollouts/999/pause")
    assert (r.status_code, r.json()) == (404, {"error": "no rollout 999"})
    r = api.post("/api/v1/rollouts", json={"model": "m", "version": "1", "waves": [50, 10]})
    assert r.status_code == 422 and "increase" in r.json()["error"]
    r = api.post("/api/v1/rollouts", json={"model": "m", "version": "1"})
    assert r.status_code == 404 and "not registered" in r.json()["error"]
    r = api.post("/api/v1/models", content=b"not a tar")
    assert r.status_code == 400 and "tar" in r.json()["error"]
    r = api.post("/api/v1/assign", json={"model": "m", "version": "1"})
    assert (r.status_code, r.json()) == (422, {"error": "give exactly one of device or selector"})
    r = api.get("/api/v1/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "token" in r.json()["error"]
