"""Retrain policies: when a monitor fires for a model, the fleet retrains it from captured rows and ships it.

A policy (one per model) names its trigger (`drift`), its chain (`convert,push[,rollout]`) and the run
directory of the version it replaces. The chain runs as subprocesses of the fleet, one run at a time per
model, in DATA/retrain/MODEL/RUN/:

    edgeml train --from-fleet MODEL@VERSION --run-dir RUN_DIR --out RUN/run      (+ RUN/run/comparison.json)
    edgeml convert RUN/run --name MODEL --out RUN/bundle [--sign-key KEY]      (version: the new run id)
    edgeml fleet push RUN/bundle
    edgeml fleet rollout start MODEL NEW_VERSION --waves … --soak …

Decisions (user-visible):
- The drift trigger fires when a version's drift level is `alert` (max PSI above the monitor's alert
  threshold, fleet/drift.py), once per model version: a version that drifted is retrained once, not on
  every poll. `--on accuracy` is refused: this fleet has no accuracy monitor (that needs feedback labels).
- The rollout step runs only when the new model is not worse than the old one on the original test set
  (`comparison.json` not_worse); otherwise the run ends `not_rolled_out` (the version stays pushed, inert
  in the registry, for a person to look at). A later retrain of a version this fleet produced starts from
  that version's run (DATA/retrain/MODEL/N/run), else from the policy's --run-dir.
- The fleet's token reaches the subprocesses through EDGEML_FLEET_TOKEN, never on a command line.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import JSON, Column, Float, Integer, String, Table, Text, insert, select, update
from sqlalchemy.engine import Engine

from edgeml.errors import ConflictError, NotFoundError, UsageError

from . import db
from .background import Background
from .capture import parse_duration
from .drift import PSI_ALERT

log = logging.getLogger("edgeml.fleet.retrain")

TRIGGERS = {"drift": "drift level alert (max PSI above the alert threshold) on a version of the model"}
CHAIN = ("convert", "push", "rollout")  # --then must be a prefix of this, at least convert,push
STEP_TIMEOUT_S = 3600.0
OUTPUT_TAIL = 2000  # characters of a step's output kept in its run record
CHECK_INTERVAL_S = 30.0

retrain_policies = Table(
    "retrain_policies", db.metadata,
    Column("model", String(128), primary_key=True),
    Column("spec", JSON, nullable=False),  # RetrainPolicy.to_dict()
    Column("fired_versions", JSON, nullable=False, default=list),  # drift: versions already retrained
    Column("updated_at", Float, nullable=False),
)

retrain_runs = Table(
    "retrain_runs", db.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("trigger", String(32), nullable=False),
    Column("version", String(64)),  # the version being replaced
    Column("state", String(32), nullable=False),  # running, succeeded, not_rolled_out, failed
    Column("new_version", String(64)),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("detail", JSON),  # steps (argv without secrets, rc, output tail), comparison, reason
    Column("error", Text),
)


@dataclass(frozen=True)
class RetrainPolicy:
    model: str
    on: str
    then: tuple[str, ...]
    run_dir: str
    since: str | None = "7d"
    pseudo_label: bool = False
    sign_key: str | None = None  # signs the new bundle (a fleet with --verify-key needs it)
    waves: str = "5,25,100"
    soak: str = "60s"

    def check(self) -> "RetrainPolicy":
        if self.on not in TRIGGERS:
            hint = " (no accuracy monitor on this fleet: it needs feedback labels)" if self.on == "accuracy" else ""
            raise UsageError(f"--on {self.on!r}: choose from {', '.join(TRIGGERS)}{hint}")
        if len(self.then) < 2 or tuple(self.then) != CHAIN[:len(self.then)]:
            raise UsageError(f"--then {','.join(self.then)!r}: use convert,push or convert,push,rollout")
        if not (Path(self.run_dir) / "edgeml-run.json").is_file():
            raise UsageError(f"--run-dir {self.run_dir}: not an `edgeml train` run directory on the fleet host")
        if self.since:
            parse_duration(self.since, "--since")
        if self.sign_key and not Path(self.sign_key).is_file():
            raise UsageError(f"--sign-key {self.sign_key}: no such file on the fleet host")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "on": self.on, "then": list(self.then), "run_dir": self.run_dir, "since": self.since,
                "pseudo_label": self.pseudo_label, "sign_key": self.sign_key, "waves": self.waves, "soak": self.soak}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RetrainPolicy":
        return cls(**{**d, "then": tuple(d["then"])})


@dataclass
class Chain:
    """Where one run works and how it calls edgeml (a registry of step builders, in CHAIN order)."""

    policy: RetrainPolicy
    version: str | None
    work: Path
    fleet_url: str
    detail: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""  # the run of `version`: an earlier retrain's, else the policy's

    def train(self) -> list[str]:
        target = self.policy.model + (f"@{self.version}" if self.version else "")
        argv = ["train", "--from-fleet", target, "--fleet-url", self.fleet_url, "--run-dir", self.run_dir or self.policy.run_dir,
                "--out", str(self.work / "run"), "--json"]
        argv += ["--since", self.policy.since] if self.policy.since else []
        return argv + (["--pseudo-label"] if self.policy.pseudo_label else [])

    def convert(self) -> list[str]:
        argv = ["convert", str(self.work / "run"), "--name", self.policy.model, "--version", self.detail["new_version"],
                "--out", str(self.work / "bundle")]
        return argv + (["--sign-key", self.policy.sign_key] if self.policy.sign_key else [])

    def push(self) -> list[str]:
        return ["fleet", "push", str(self.work / "bundle"), "--server", self.fleet_url]

    def rollout(self) -> list[str]:
        return ["fleet", "rollout", "start", self.policy.model, self.detail["new_version"], "--waves", self.policy.waves,
                "--soak", self.policy.soak, "--server", self.fleet_url]


STEPS: dict[str, Callable[[Chain], list[str]]] = {"convert": Chain.convert, "push": Chain.push, "rollout": Chain.rollout}


class RetrainPolicies:
    """Stored policies, their runs, the drift check and the chain runner of one fleet."""

    def __init__(self, engine: Engine, data_dir: Path, fleet_url: str, token: str | None,
                 drift_of: Callable[[], list[dict[str, Any]]] | None = None, interval_s: float = CHECK_INTERVAL_S) -> None:
        self.engine, self.root, self.fleet_url, self.token = engine, Path(data_dir) / "retrain", fleet_url, token
        self.drift_of, self.interval_s = drift_of, interval_s
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self._background = Background("retrain-monitor", self._loop, self._stop)

    # -- policies --------------------------------------------------------------------------------
    def put(self, policy: RetrainPolicy) -> dict[str, Any]:
        policy.check()
        with self.engine.begin() as conn:
            if self._row(conn, policy.model) is None:
                conn.execute(insert(retrain_policies).values(model=policy.model, spec=policy.to_dict(), fired_versions=[],
                                                             updated_at=time.time()))
            else:
                conn.execute(update(retrain_policies).where(retrain_policies.c.model == policy.model)
                             .values(spec=policy.to_dict(), updated_at=time.time()))
        return policy.to_dict()

    def delete(self, model: str) -> None:
        """Remove the policy (its run records stay); a running chain finishes."""
        self.get(model)
        with self.engine.begin() as conn:
            conn.execute(retrain_policies.delete().where(retrain_policies.c.model == model))

    def get(self, model: str) -> RetrainPolicy:
        with self.engine.connect() as conn:
            row = self._row(conn, model)
        if row is None:
            raise NotFoundError(f"no retrain policy for {model} (`edgeml fleet retrain-policy {model} --on drift …`)")
        return RetrainPolicy.from_dict(row["spec"])

    def status(self, model: str, limit: int = 20) -> dict[str, Any]:
        policy = self.get(model)
        t = retrain_runs
        with self.engine.connect() as conn:
            runs = [dict(r) for r in conn.execute(select(t).where(t.c.model == model).order_by(t.c.id.desc()).limit(limit)).mappings()]
        return {"policy": policy.to_dict(), "running": model in self._running, "runs": runs}

    @staticmethod
    def _row(conn: Any, model: str) -> dict[str, Any] | None:
        found = conn.execute(select(retrain_policies).where(retrain_policies.c.model == model)).mappings().first()
        return dict(found) if found else None

    # -- triggers --------------------------------------------------------------------------------
    def on_drift(self, model: str, version: str, drift: dict[str, Any] | None) -> int | None:
        """What the drift monitor calls with a version's drift report: fires the model's drift policy (once per
        version) when the level is alert; returns the run id, or None when nothing fired."""
        if not drift or drift.get("level") != "alert" or float(drift.get("max_psi") or 0.0) <= PSI_ALERT:
            return None
        with self.engine.connect() as conn:
            row = self._row(conn, model)
        if row is None or row["spec"]["on"] != "drift" or version in (row["fired_versions"] or []) or model in self._running:
            return None
        with self.engine.begin() as conn:
            conn.execute(update(retrain_policies).where(retrain_policies.c.model == model)
                         .values(fired_versions=[*(row["fired_versions"] or []), version]))
        log.info("drift alert on %s %s (max PSI %s): retraining", model, version, drift.get("max_psi"))
        return self.fire(model, "drift", version)

    def check(self) -> list[int]:
        """One pass of the monitor: every model version's drift through on_drift."""
        fired = []
        for stats in self.drift_of() if self.drift_of else []:
            run = self.on_drift(str(stats.get("model")), str(stats.get("version")), stats.get("drift"))
            if run is not None:
                fired.append(run)
        return fired

    def fire(self, model: str, trigger: str, version: str | None = None) -> int:
        """Start the chain for `model` in a thread (ConflictError when one is running); returns the run id."""
        policy = self.get(model)
        with self._lock:
            if model in self._running:
                raise ConflictError(f"a retrain of {model} is already running")
            with self.engine.begin() as conn:
                run_id = conn.execute(insert(retrain_runs).values(model=model, trigger=trigger, version=version,
                                                                  state="running", started_at=time.time(), detail={})).inserted_primary_key[0]
            thread = threading.Thread(target=self._run, args=(run_id, policy, version), name=f"retrain-{model}", daemon=True)
            self._running[model] = thread
        thread.start()
        return int(run_id)

    def wait(self, model: str, timeout: float | None = None) -> None:
        thread = self._running.get(model)
        if thread is not None:
            thread.join(timeout)

    # -- the chain -------------------------------------------------------------------------------
    def _run(self, run_id: int, policy: RetrainPolicy, version: str | None) -> None:
        work = self.root / policy.model / str(run_id)
        chain = Chain(policy, version, work, self.fleet_url, {"steps": []}, self._run_dir_of(policy, version))
        state, error = "failed", None
        try:
            work.mkdir(parents=True, exist_ok=True)
            if self._step(chain, "train", chain.train()):
                comparison = json.loads((work / "run" / "comparison.json").read_text())
                chain.detail.update(comparison=comparison, new_version=comparison["new_run"])
                state = self._ship(chain, comparison)
            if state == "failed":
                error = _failure(chain.detail)
        except Exception as exc:  # the fleet keeps running; the run says what happened
            log.exception("retrain of %s failed", policy.model)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self.engine.begin() as conn:
                conn.execute(update(retrain_runs).where(retrain_runs.c.id == run_id).values(
                    state=state, finished_at=time.time(), detail=chain.detail, error=error,
                    new_version=chain.detail.get("new_version")))
            with self._lock:
                self._running.pop(policy.model, None)

    def _run_dir_of(self, policy: RetrainPolicy, version: str | None) -> str:
        """The run that trained `version`: the newest retrain run of this fleet that produced it, else the policy's."""
        t = retrain_runs
        if version is not None:
            with self.engine.connect() as conn:
                found = conn.execute(select(t.c.id).where(t.c.model == policy.model, t.c.new_version == version,
                                                          t.c.state != "failed").order_by(t.c.id.desc())).first()
            if found is not None and (self.root / policy.model / str(found[0]) / "run").is_dir():
                return str(self.root / policy.model / str(found[0]) / "run")
        return policy.run_dir

    def _ship(self, chain: Chain, comparison: dict[str, Any]) -> str:
        for name in chain.policy.then:
            if name == "rollout" and not comparison.get("not_worse"):
                chain.detail["reason"] = (f"not rolled out: the new model is worse than the old one on the original test "
                                          f"set ({comparison.get('primary_metric')})")
                return "not_rolled_out"
            if not self._step(chain, name, STEPS[name](chain)):
                return "failed"
        return "succeeded"

    def _step(self, chain: Chain, name: str, argv: list[str]) -> bool:
        env = {**os.environ, **({"EDGEML_FLEET_TOKEN": self.token} if self.token else {})}
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-m", "edgeml", *argv], env=env, capture_output=True, text=True,
                                  timeout=STEP_TIMEOUT_S, cwd=chain.work)
            rc, output = done.returncode, (done.stdout + done.stderr)
        except subprocess.TimeoutExpired as exc:
            rc, output = -1, f"timed out after {STEP_TIMEOUT_S:.0f} s\n{exc.stdout or ''}{exc.stderr or ''}"
        chain.detail["steps"].append({"step": name, "argv": ["edgeml", *argv], "rc": rc,
                                      "seconds": round(time.monotonic() - started, 2), "output": output[-OUTPUT_TAIL:]})
        return rc == 0

    # -- the monitor loop ------------------------------------------------------------------------
    def start(self) -> "RetrainPolicies":
        with self.engine.begin() as conn:  # runs of a fleet that stopped mid-chain: say so, do not show them running
            conn.execute(update(retrain_runs).where(retrain_runs.c.state == "running").values(
                state="failed", finished_at=time.time(), error="interrupted: the fleet stopped during the run"))
        self._background.start()
        return self

    def stop(self) -> None:
        self._background.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the database away: try again next tick
                log.exception("retrain policy check failed")


def _failure(detail: dict[str, Any]) -> str:
    failed = [s for s in detail.get("steps", []) if s["rc"] != 0]
    if not failed:
        return "failed"
    last = failed[-1]
    lines = [ln for ln in last["output"].splitlines() if ln.strip()]
    return f"step {last['step']} exited {last['rc']}: {lines[-1] if lines else 'no output'}"
