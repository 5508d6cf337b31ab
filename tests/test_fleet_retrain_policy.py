"""`edgeml fleet retrain-policy`: the fleet retrains, converts and pushes when triggered, records each run, and
never rolls out a candidate that is worse on the original test set."""

from __future__ import annotations

import numpy as np

from fleet_fixtures import TOKEN, wait_until
from retrain_fixtures import captured, cli, iris_like, loop, send  # noqa: F401  (loop: the session fixture)


def policy_cli(loop, *args):
    return cli("fleet", "retrain-policy", *args, "--server", loop.fleet.url, "--token", TOKEN)


def status(loop) -> dict:
    return loop.fleet.get("/api/v1/retrain-policies/iris")


def finished(loop, trigger: str) -> dict | None:
    runs = [r for r in status(loop)["runs"] if r["trigger"] == trigger and r["state"] != "running"]
    return runs[0] if runs else None


def test_a_manual_run_trains_converts_and_pushes_a_new_version_and_records_it(loop):
    for i in range(10):
        send(loop, iris_like(4, seed=100 + i))
    wait_until(lambda: captured(loop, "1.0") >= 10, 30, "captured requests")
    r = policy_cli(loop, "iris", "--on", "drift", "--then", "convert,push", "--run-dir", loop.run, "--pseudo-label",
                   "--sign-key", loop.keys[0])
    assert r.exit_code == 0, r.output
    r = policy_cli(loop, "run", "iris@1.0")
    assert r.exit_code == 0 and "started" in r.output, r.output
    run = wait_until(lambda: finished(loop, "manual"), 120, "the retrain chain to finish")
    assert run["state"] == "succeeded", run
    steps = run["detail"]["steps"]
    assert [s["step"] for s in steps] == ["train", "convert", "push"] and all(s["rc"] == 0 for s in steps)
    assert not any(TOKEN in " ".join(s["argv"]) for s in steps)  # the token travels in the environment only
    comparison = run["detail"]["comparison"]
    assert comparison["not_worse"] and set(comparison["datasets"]) == {"original_test", "fleet"}
    new = run["new_version"]
    assert new == comparison["new_run"]
    pushed = loop.fleet.get(f"/api/v1/models/iris/{new}")
    assert pushed["manifest"]["metrics"]["run_id"] == new
    shown = policy_cli(loop, "status", "iris")
    assert shown.exit_code == 0 and "succeeded" in shown.output and new in shown.output, shown.output
    assert policy_cli(loop, "delete", "iris").exit_code == 0
    gone = policy_cli(loop, "status", "iris")
    assert gone.exit_code != 0 and "no retrain policy" in gone.output


def test_drift_fires_the_policy_and_a_worse_candidate_is_not_rolled_out(loop):
    # A firmware update makes the device report millimetres: inputs ten times larger. Once the policy is on,
    # the drift monitor fires; pseudo-labelled millimetre rows dominate the retraining and the candidate gets
    # worse on the original test set, so it is pushed but not rolled out.
    before = captured(loop, "1.0")
    rng = np.random.default_rng(0)
    for _ in range(60):
        send(loop, (iris_like(8, seed=int(rng.integers(1 << 30))) * 10).astype(np.float32))
    wait_until(lambda: captured(loop, "1.0") >= before + 60, 60, "the millimetre requests captured")
    r = policy_cli(loop, "iris", "--on", "drift", "--then", "convert,push,rollout", "--run-dir", loop.run,
                   "--pseudo-label", "--sign-key", loop.keys[0], "--waves", "100", "--soak", "0s")
    assert r.exit_code == 0, r.output
    run = wait_until(lambda: finished(loop, "drift"), 180, "the drift-triggered retrain to finish")
    assert run["version"] == "1.0" and run["state"] == "not_rolled_out", run
    assert [s["step"] for s in run["detail"]["steps"]] == ["train", "convert", "push"]
    held = run["detail"]["comparison"]["datasets"]["original_test"]
    assert held["new"]["accuracy"] < held["old"]["accuracy"]
    assert "worse" in run["detail"]["reason"]
    assert not [r for r in loop.fleet.get("/api/v1/rollouts") if r.get("version") == run["new_version"]]
    shown = policy_cli(loop, "status", "iris")
    assert "not_rolled_out" in shown.output and "accuracy" in shown.output, shown.output


def test_bad_policies_and_unknown_models_get_one_clear_error(loop):
    r = policy_cli(loop, "iris", "--on", "accuracy", "--then", "convert,push", "--run-dir", loop.run)
    assert r.exit_code != 0 and "no accuracy monitor" in r.output, r.output
    r = policy_cli(loop, "iris", "--on", "drift", "--then", "rollout", "--run-dir", loop.run)
    assert r.exit_code != 0 and "convert,push" in r.output, r.output
    r = policy_cli(loop, "iris", "--on", "drift", "--then", "convert,push", "--run-dir", loop.root / "nowhere")
    assert r.exit_code != 0 and "not an `edgeml train` run directory" in r.output, r.output
    r = policy_cli(loop, "status", "no-such-model")
    assert r.exit_code != 0 and "404" in r.output and "no retrain policy" in r.output, r.output


def test_the_drift_hook_fires_only_on_alert_and_once_per_version(tmp_path, keys):
    from edgeml.fleet import db
    from edgeml.fleet.retrain_policy import RetrainPolicies, RetrainPolicy

    engine = db.connect(db.default_url(tmp_path))
    policies = RetrainPolicies(engine, tmp_path, "http://127.0.0.1:9", None)
    fired: list[tuple] = []
    policies.fire = lambda model, trigger, version=None: fired.append((model, trigger, version)) or len(fired)
    alert = {"level": "alert", "max_psi": 0.9}
    assert policies.on_drift("m", "1", alert) is None  # no policy for m
    run = tmp_path / "run"
    run.mkdir()
    (run / "edgeml-run.json").write_text("{}")
    policies.put(RetrainPolicy("m", "drift", ("convert", "push"), str(run)))
    assert policies.on_drift("m", "1", {"level": "warn", "max_psi": 0.2}) is None
    assert policies.on_drift("m", "1", None) is None
    assert policies.on_drift("m", "1", alert) == 1
    assert policies.on_drift("m", "1", alert) is None  # this version was retrained already
    assert policies.on_drift("m", "2", alert) == 2
    assert fired == [("m", "drift", "1"), ("m", "drift", "2")]
    policies.drift_of = lambda: [{"model": "m", "version": "3", "drift": alert}, {"model": "x", "version": "1", "drift": alert}]
    assert policies.check() == [3]  # the monitor pass: only models with a policy
