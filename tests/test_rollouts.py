"""Staged rollouts on simulated devices over Mosquitto: waves, gates, automatic rollback, restarts,
operator actions, refused requests, A/B and shadow comparisons."""

from __future__ import annotations

import json

import pytest

from fleet_fixtures import TOKEN, start_mosquitto, wait_until
from rollout_fixtures import FAST_GATES, iris_bundle, start_rig, traffic_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, keys):
    root = tmp_path_factory.mktemp("rollout-bundles")
    return {
        "1.0": iris_bundle(root, keys, "1.0", seed=0),
        "2.0": iris_bundle(root, keys, "2.0", seed=1),
        "bad": iris_bundle(root, keys, "2.1-bad", seed=2, extra_features=2),  # 6 inputs: real traffic has 4
        "slow": iris_bundle(root, keys, "2.2-slow", seed=3, hidden=(2048, 2048)),
        "traffic": traffic_file(root),
    }


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory):
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture()
def rig(tmp_path, keys, bundles, mosquitto, request):
    devices = getattr(request, "param", 20)
    rig = start_rig(tmp_path, keys, mosquitto.url, bundles["1.0"], devices=devices, traffic=bundles["traffic"])
    yield rig
    rig.stop()


def actions(rollout) -> list[str]:
    return [d["action"] for d in rollout["decisions"]]


@pytest.mark.parametrize("rig", [50], indirect=True)
def test_good_version_rolls_out_wave_by_wave_to_every_device(rig, bundles):
    rig.push(bundles["2.0"])
    status, r = rig.start("2.0", waves=[5, 25, 100])
    assert status == 201, r
    first = r["waves"][0]
    assert r["state"] == "running" and first["state"] == "soaking" and first["devices"]
    assert r["waves"][1]["devices"] == [] and r["targeted"] == len(first["devices"])
    done = rig.wait_state(r["id"], ("completed", "rolled_back", "paused"), 150)
    assert done["state"] == "completed", done["decisions"]
    assert actions(done) == ["start", "advance", "advance", "complete"]
    assert [w["state"] for w in done["waves"]] == ["passed"] * 3
    assert sum(len(w["devices"]) for w in done["waves"]) == done["targeted"] == 50
    assert len(first["devices"]) < len(done["waves"][1]["devices"]) + len(first["devices"]) < 50
    wait_until(lambda: rig.on("2.0"), 60, "every device on 2.0")
    advance = done["decisions"][1]["numbers"]
    assert advance["new"]["requests"] > 0 and advance["error_rate"] == 0 and advance["min_reporting"] >= 1
    assert {g["name"] for g in done["gates"]} == {"install_failures", "min_reporting", "error_rate", "p99_ratio", "drift_psi"}
    assert all(g["passed"] for g in done["gates"])
    # The cohort is deterministic: the same devices open every rollout, whatever its id.
    from edgeml.fleet.rollouts.cohorts import members

    assert set(first["devices"]) == {d for d, w in members(rig.versions(), [5, 25, 100], 0).items()}


@pytest.mark.parametrize("version,gate", [("bad", "error_rate"), ("slow", "p99_ratio")])
def test_failing_version_stops_at_the_first_wave_and_rolls_back(rig, bundles, version, gate):
    target = "2.1-bad" if version == "bad" else "2.2-slow"
    rig.push(bundles[version])
    status, r = rig.start(target, waves=[20, 60, 100], gates={**FAST_GATES, "max_p99_ratio": 1.5})
    assert status == 201, r
    done = rig.wait_state(r["id"], ("completed", "rolled_back", "paused"), 90)
    assert done["state"] == "rolled_back", done["decisions"]
    installed = [e for e in rig.fleet.get("/api/v1/events?limit=1000") if e["event"] == "installed"]
    assert {e["device_id"] for e in installed if e["payload"]["version"] == target} == set(done["waves"][0]["devices"])
    assert actions(done) == ["start", "rollback"]
    assert done["waves"][0]["state"] == "failed" and done["waves"][1]["devices"] == []
    failing = {g["name"]: g for g in done["gates"]}[gate]
    assert failing["passed"] is False and failing["value"] > failing["threshold"]
    decision = done["decisions"][-1]
    assert gate in decision["reason"] and decision["numbers"][gate] == failing["value"]
    wait_until(lambda: rig.on("1.0"), 60, "canaries back on 1.0")
    print(f"{gate}: {failing['value']:.3g} > {failing['threshold']}; decision: {decision['reason']}")


def test_rollout_continues_after_the_fleet_is_killed_and_restarted(rig, bundles):
    rig.push(bundles["2.0"])
    status, r = rig.start("2.0", waves=[10, 50, 100], soak_s=8)
    assert status == 201
    second = wait_until(lambda: (lambda x: x if x["current_wave"] == 1 and x["waves"][1]["devices"]
                                 and x["waves"][1]["installed"] == len(x["waves"][1]["devices"]) else None)(rig.rollout(r["id"])),
                        60, "the second wave installed and soaking")
    rig.restart_fleet()  # SIGKILL mid-soak, same --data
    after = rig.rollout(r["id"])
    assert after["state"] == "running" and after["current_wave"] == 1
    assert after["waves"][1]["started_at"] == second["waves"][1]["started_at"]  # the same soak, not a new one
    done = rig.wait_state(r["id"], ("completed", "rolled_back", "paused"), 120)
    assert done["state"] == "completed", done["decisions"]
    # Devices whose download the kill interrupted got their desired document again ("reissue").
    assert [a for a in actions(done) if a != "reissue"] == ["start", "advance", "advance", "complete"]
    wait_until(lambda: rig.on("2.0"), 60, "every device on 2.0")


def test_operator_pause_resume_abort_and_rollback_through_api_and_cli(rig, bundles, run_cli):
    rig.push(bundles["2.0"])
    base = ["--server", rig.fleet.url, "--token", TOKEN]
    selector = ",".join(f"{k}={v}" for k, v in rig.tags.items())
    started = run_cli("fleet", "rollout", "start", "iris", "2.0", "--selector", selector, "--waves", "10,50,100",
                      "--soak", "30s", "--max-drift-psi", "5", *base)
    assert started.exit_code == 0, started.output
    rid = int(started.stdout.split()[1].rstrip(":"))
    paused = run_cli("fleet", "rollout", "pause", rid, *base)
    assert paused.exit_code == 0 and "paused" in paused.stdout
    stale = run_cli("fleet", "rollout", "pause", rid, *base)
    assert stale.exit_code != 0 and "409" in stale.error_lines[0] and "Traceback" not in stale.output
    status, body = rig.fleet.api("POST", f"/api/v1/rollouts/{rid}/resume")
    assert status == 200 and body["state"] == "running"
    status, body = rig.fleet.api("POST", f"/api/v1/rollouts/{rid}/abort")
    assert status == 200 and body["state"] == "aborted"
    canaries = body["waves"][0]["devices"]
    wait_until(lambda: rig.on("2.0", canaries), 60, "canaries keep 2.0 after an abort")
    rolled = run_cli("fleet", "rollout", "rollback", rid, *base)
    assert rolled.exit_code == 0 and "rolled_back" in rolled.stdout
    wait_until(lambda: rig.on("1.0"), 60, "canaries back on 1.0")
    shown = json.loads(run_cli("fleet", "rollout", "status", rid, "--json", *base).stdout)
    assert actions(shown) == ["start", "pause", "resume", "abort", "rollback"]
    assert shown["decisions"][-1]["numbers"]["devices"] == len(canaries)
    table = run_cli("fleet", "rollout", "status", *base)
    assert table.exit_code == 0 and "rolled_back" in table.stdout
    # A finished rollout cannot be resumed: 409, nothing changes.
    status, body = rig.fleet.api("POST", f"/api/v1/rollouts/{rid}/resume")
    assert status == 409 and "rolled_back" in body["error"]
    assert rig.rollout(rid)["decisions"] == shown["decisions"]


@pytest.mark.parametrize("rig", [6], indirect=True)
def test_bad_requests_are_refused_without_a_state_change(rig, bundles, run_cli):
    rig.push(bundles["2.0"])
    status, body = rig.start("9.9")
    assert status == 404 and "9.9" in body["error"]
    for bad in ({"waves": [50, 25]}, {"waves": [0, 100]}, {"waves": [10, 150]}, {"gates": {"max_error_rate": -0.1}},
                {"gates": {"max_p99_ratio": 0.5}}, {"gates": {"min_reporting": 0}}, {"soak_s": -1},
                {"mode": "ab"}, {"mode": "canary"}, {"on_failure": "explode"}):
        status, body = rig.start("2.0", **bad)
        assert status == 422 and body["error"], (bad, status, body)
    assert rig.fleet.get("/api/v1/rollouts") == []
    status, r = rig.start("2.0", soak_s=60)
    assert status == 201
    status, body = rig.start("2.0", selector={})  # every device: overlaps the first one
    assert status == 409 and f"rollout {r['id']}" in body["error"]
    status, body = rig.start("2.0", selector={"site": "nowhere"})
    assert status == 404
    assert len(rig.fleet.get("/api/v1/rollouts")) == 1
    assert rig.fleet.api("GET", "/api/v1/rollouts", token=None)[0] == 401
    assert rig.fleet.api("POST", f"/api/v1/rollouts/{r['id']}/pause", token=None)[0] == 401
    assert rig.fleet.api("POST", "/api/v1/rollouts/999/pause")[0] == 404
    cli = run_cli("fleet", "rollout", "start", "iris", "2.0", "--soak", "soon", "--server", rig.fleet.url, "--token", TOKEN)
    assert cli.exit_code != 0 and "--soak" in cli.error_lines[0]
    cli = run_cli("fleet", "rollout", "start", "iris", "2.0", "--waves", "50,10", "--server", rig.fleet.url, "--token", TOKEN)
    assert cli.exit_code != 0 and "422" in cli.error_lines[0] and "increase" in cli.error_lines[0]


def test_ab_rollout_reports_both_arms(rig, bundles):
    rig.push(bundles["2.0"])
    status, r = rig.start("2.0", mode="ab", ab_percent=50, baseline_version="1.0", waves=[100], soak_s=3)
    assert status == 201, r
    done = rig.wait_state(r["id"], ("completed", "rolled_back", "paused"), 90)
    assert done["state"] == "completed", done["decisions"]
    c = done["comparison"]
    assert c["kind"] == "ab" and c["baseline"]["version"] == "1.0" and c["candidate"]["version"] == "2.0"
    assert c["baseline"]["requests"] > 0 and c["candidate"]["requests"] > 0
    assert c["prediction_psi"] is not None and c["latency_p99_ratio"] > 0
    versions = rig.versions()
    arms = {v for v in versions.values()}
    assert arms == {"1.0", "2.0"}, versions
    print("A/B:", json.dumps({k: c[k] for k in ("prediction_psi", "latency_p99_ratio", "error_rate_delta")}))


@pytest.mark.parametrize("rig", [8], indirect=True)
def test_shadow_rollout_reports_agreement_and_latency_and_never_serves_the_candidate(rig, bundles):
    rig.push(bundles["2.0"])
    status, r = rig.start("2.0", mode="shadow", waves=[50, 100], soak_s=2, gates={**{"min_reporting": 2}})
    assert status == 201, r
    done = rig.wait_state(r["id"], ("completed", "rolled_back", "paused"), 90)
    assert done["state"] == "completed", done["decisions"]
    c = done["comparison"]
    assert c["kind"] == "shadow" and c["version"] == "2.0" and c["requests"] > 0
    assert 0.5 <= c["agreement"] <= 1.0 and c["latency_p99_s"] > 0 and {g["name"] for g in done["gates"]} == {"install_failures", "min_reporting", "error_rate"}
    assert rig.on("1.0")  # the candidate never serves
    agent = rig.sim.agents[0]
    assert agent.shadow.reported().state == "active" and agent.holder.model.info.version == "1.0"
    status, body = rig.fleet.api("POST", f"/api/v1/rollouts/{r['id']}/rollback")
    assert status == 200
    wait_until(lambda: all(a.shadow.reported() is None for a in rig.sim.agents), 30, "shadows removed")
    print("shadow:", json.dumps({k: c[k] for k in ("agreement", "latency_p50_s", "latency_p99_s", "requests")}))
