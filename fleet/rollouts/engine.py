"""The rollout engine: a loop thread in the fleet service that moves every running rollout along.

    running: wave k opens (its devices get the new desired document) -> soaks -> gates
             -> passed: wave k+1 opens ... last wave passed -> completed
             -> failed: on_failure "rollback" -> every touched device back to its previous version, rolled_back
                        on_failure "pause"    -> paused (resume re-soaks the wave; rollback/abort by hand)
    paused / completed / aborted / rolled_back: operator actions only (pause, resume, abort, rollback)

Every state change is written to the database before anything is published, and every decision is
recorded with the numbers that caused it, so a fleet service killed mid-rollout resumes where it was.

The engine knows no HTTP (rollouts/api.py serves it) and no FleetService: it gets its repository and
four narrow collaborators (rollouts/ports.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from edgeml.errors import ConflictError, NotFoundError

from . import cohorts
from .gates import Evaluation, Window, compare_ab, evaluate
from .models import ACTIVE_STATES, Mode, OnFailure, RolloutSpec, State
from .ports import DeviceDirectory, ModelCatalog, Publisher, TelemetryReader
from .repository import RolloutRepository, jsonable

log = logging.getLogger("edgeml.fleet.rollouts")

TICK_S = 0.5
EVALUATE_EVERY_S = 1.0  # gate values refresh while a wave soaks (the dashboard shows them live)
NO_DATA_GRACE_S = 60.0  # after the soak, how long a wave may wait for min_reporting devices before it fails
SETTLE_WAIT_S = 30.0  # how long gates wait for every device of a wave to report on the new version
FAILURE_EVENTS = ("install_failed", "shadow_install_failed")
STEP_FAILED_LOG_S = 60.0


# The states an action may start from; anything else is a stale request (ConflictError, no state change).
ACTIONS: dict[str, tuple[str, ...]] = {
    "pause": (State.RUNNING.value,),
    "resume": (State.PAUSED.value,),
    "abort": (State.RUNNING.value, State.PAUSED.value),
    "rollback": (State.RUNNING.value, State.PAUSED.value, State.COMPLETED.value, State.ABORTED.value),
}


class RolloutEngine:
    def __init__(self, repository: RolloutRepository, devices: DeviceDirectory, publish: Publisher,
                 telemetry: TelemetryReader, catalog: ModelCatalog) -> None:
        self.repo, self.devices, self.publish = repository, devices, publish
        self.telemetry, self.catalog = telemetry, catalog
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._evaluated: dict[int, float] = {}
        self._step_failed: dict[int, float] = {}  # rollout id -> when its failing step was last logged
        self.capture_policies: Any = None  # spec.capture -> (device id -> CapturePolicy); set by fleet/api.py

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "RolloutEngine":
        try:
            self.resume_interrupted()
        except Exception:  # never keep the fleet from starting; the loop retries its own work
            log.exception("could not re-issue interrupted installs")
        self._thread = threading.Thread(target=self._run, name="rollout-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # the loop must survive a database hiccup; the next tick retries
                log.exception("rollout tick failed")

    def resume_interrupted(self) -> None:
        """After a restart: re-issue the desired document to touched devices of running rollouts that are
        not on their target yet and reported no failure (a fleet that died mid-install took their downloads
        and, on a shared subscription, their failure events with it)."""
        with self._lock:
            for row in self._rows(state=State.RUNNING.value):
                spec = RolloutSpec.from_dict(row["spec"])
                touched = self._touched(row["id"])
                failed = self._failures(row, touched)
                devices = {d["id"]: d for d in self.devices.list(tag=spec.selector or None)}
                stale = [rec for d, rec in touched.items() if d in devices and d not in failed and rec["rolled_back_at"] is None
                         and _device_status(spec, rec, devices[d], 0) != "installed"]
                if stale:
                    self._publish(spec, stale)
                    self._set(row, "reissue", f"fleet restarted: desired documents sent again to {len(stale)} devices "
                                              f"not yet on {spec.version}", {"devices": sorted(r["device_id"] for r in stale)})

    def tick(self) -> None:
        """One step of every running rollout; one that fails (a row this version cannot read) is logged
        and skipped, never stopping the others."""
        with self._lock:
            for row in self._rows(state=State.RUNNING.value):
                try:
                    self._step(row)
                except Exception:  # logged once a minute per rollout, not every tick
                    rid, now = row.get("id"), time.monotonic()
                    if now - self._step_failed.get(rid, -math.inf) >= STEP_FAILED_LOG_S:
                        self._step_failed[rid] = now
                        log.exception("rollout %s: step failed; retried on every tick", rid)

    # -- requests from the API ---------------------------------------------------------------------
    def create(self, spec: RolloutSpec) -> dict[str, Any]:
        """Validate and start a rollout (SpecError, NotFoundError, ConflictError when refused)."""
        spec.validate()
        for version in filter(None, (spec.version, spec.baseline_version if spec.mode is Mode.AB else None)):
            if self.catalog.get(spec.model, version) is None:
                raise NotFoundError(f"model {spec.model} {version} is not registered; push it first")
        with self._lock:
            cohort = self._cohort(spec)
            if not cohort:
                raise NotFoundError(f"no device matches the selector {spec.selector}")
            self._refuse_overlap(cohort)
            waves = [{"index": i, "percent": p, "state": "pending", "started_at": None, "soak_until": None}
                     for i, p in enumerate(spec.waves)]
            rid = self.repo.create(spec, waves, f"rollout of {spec.model} {spec.version} ({spec.mode.value}) to "
                                   f"{len(cohort)} devices in waves {spec.waves}", {"cohort": len(cohort), "waves": spec.waves})
            self._step(self._row(rid))  # open the first wave now: the response shows its devices
            return self.get(rid)

    def get(self, rollout_id: int) -> dict[str, Any]:
        """The rollout object the API shows (NotFoundError for an unknown id)."""
        row = self._row(rollout_id)
        if row is None:
            raise NotFoundError(f"no rollout {rollout_id}")
        return self._object(row)

    def list(self) -> list[dict[str, Any]]:
        return [self._object(r) for r in self._rows()]

    def act(self, rollout_id: int, action: str) -> dict[str, Any]:
        """Apply an operator action (NotFoundError, or ConflictError from a state it cannot start from)."""
        if action not in ACTIONS:
            raise NotFoundError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        with self._lock:
            row = self._row(rollout_id)
            if row is None:
                raise NotFoundError(f"no rollout {rollout_id}")
            if row["state"] not in ACTIONS[action]:
                raise ConflictError(f"rollout {rollout_id} is {row['state']}: cannot {action} it "
                                    f"(possible from {', '.join(ACTIONS[action])})")
            getattr(self, f"_{action}")(row)
            return self.get(rollout_id)

    # -- operator actions --------------------------------------------------------------------------
    def _pause(self, row: dict[str, Any]) -> None:
        self._set(row, "pause", "paused by the operator", {}, state=State.PAUSED.value)

    def _resume(self, row: dict[str, Any]) -> None:
        waves, now = row["waves"], time.time()
        wave = waves[row["current_wave"]]
        if wave["state"] in ("soaking", "failed"):  # a fresh soak window: the numbers before the pause are stale
            soak = RolloutSpec.from_dict(row["spec"]).soak_s
            wave.update(state="soaking", started_at=now, soak_until=now + soak)
        self._set(row, "resume", "resumed by the operator", {"wave": row["current_wave"]}, state=State.RUNNING.value, waves=waves)

    def _abort(self, row: dict[str, Any]) -> None:
        self._set(row, "abort", "aborted by the operator; devices keep the version they have", {}, state=State.ABORTED.value)

    def _rollback(self, row: dict[str, Any], reason: str = "rolled back by the operator",
                  numbers: dict[str, Any] | None = None, waves: list[dict[str, Any]] | None = None) -> None:
        touched = self._touched(row["id"])
        self._set(row, "rollback", reason, {**(numbers or {}), "devices": len(touched)},
                  state=State.ROLLED_BACK.value, **({"waves": waves} if waves is not None else {}))
        self._restore(row["id"], touched)

    # -- the state machine -------------------------------------------------------------------------
    def _step(self, row: dict[str, Any]) -> None:
        spec = RolloutSpec.from_dict(row["spec"])
        waves, w = row["waves"], row["current_wave"]
        wave = waves[w]
        if wave["state"] == "pending":
            now = time.time()
            wave.update(state="soaking", started_at=now, soak_until=now + spec.soak_s)
            self.repo.update(row["id"], waves=waves, updated_at=now)
            row["waves"] = waves
            self._evaluated.pop(row["id"], None)
        self._include(row, spec, w)
        if wave["state"] != "soaking":
            return
        now = time.time()
        soaked = now >= wave["soak_until"]
        if not soaked and now - self._evaluated.get(row["id"], 0.0) < EVALUATE_EVERY_S:
            return
        self._evaluated[row["id"]] = now
        ev = self._evaluate(row, spec, wave)
        if ev.install_failed:
            self._fail(row, spec, f"wave {w}: install failures {ev.numbers['install_failures']} > "
                                  f"{spec.gates.max_install_failures}", ev)
        elif soaked and ev.failed:
            self._fail(row, spec, f"wave {w}: gate(s) failed: " + ", ".join(_describe(g) for g in ev.gates if g["name"] in ev.failed), ev)
        elif soaked and ev.ready:
            self._advance(row, spec, ev)
        elif soaked and now >= wave["soak_until"] + max(NO_DATA_GRACE_S, spec.soak_s):
            self._fail(row, spec, f"wave {w}: not enough devices reported telemetry on {spec.version} "
                                  f"({ev.numbers.get('min_reporting')} of {spec.gates.min_reporting})", ev)

    def _advance(self, row: dict[str, Any], spec: RolloutSpec, ev: Evaluation) -> None:
        waves, w, now = row["waves"], row["current_wave"], time.time()
        waves[w]["state"] = "passed"
        numbers = {"wave": w, **ev.numbers}
        if w + 1 == len(waves):
            self._set(row, "complete", f"wave {w} ({waves[w]['percent']:g}%) passed its gates; rollout complete",
                      numbers, state=State.COMPLETED.value, waves=waves)
            return
        waves[w + 1].update(state="soaking", started_at=now, soak_until=now + spec.soak_s)
        self._set(row, "advance", f"wave {w} ({waves[w]['percent']:g}%) passed its gates; opening wave {w + 1} "
                                  f"({waves[w + 1]['percent']:g}%)", numbers, waves=waves, current_wave=w + 1)
        self._evaluated.pop(row["id"], None)
        self._include(self._row(row["id"]), spec, w + 1)

    def _fail(self, row: dict[str, Any], spec: RolloutSpec, reason: str, ev: Evaluation) -> None:
        waves = row["waves"]
        waves[row["current_wave"]]["state"] = "failed"
        numbers = {"wave": row["current_wave"], **ev.numbers}
        if spec.on_failure is OnFailure.ROLLBACK:
            self._rollback(row, reason + "; rolling back every touched device", numbers, waves)
        else:
            self._set(row, "pause", reason + "; paused (on_failure=pause)", numbers, state=State.PAUSED.value, waves=waves)

    # -- devices -----------------------------------------------------------------------------------
    def _include(self, row: dict[str, Any], spec: RolloutSpec, upto: int) -> None:
        """Assign the new version to the devices of waves 0..upto not yet in the rollout (also late joiners)."""
        rid = row["id"]
        devices = {d["id"]: d for d in self.devices.list(tag=spec.selector or None)}
        touched = self._touched(rid)
        busy = self._busy(exclude=rid)
        wanted = cohorts.members(devices, spec.waves, upto)
        # Offline devices join when they come back online (their wave is open by then, or will be).
        new = [d for d in sorted(wanted) if d not in touched and d not in busy and devices[d]["online"]]
        if spec.mode is Mode.SHADOW:
            new = [d for d in new if devices[d]["version"]]  # a shadow runs beside an active model
        if not new:
            return
        now = time.time()
        records = []
        for d in new:
            dev = devices[d]
            target = spec.version
            if spec.mode is Mode.AB and cohorts.ab_arm(d, spec.ab_percent) == "baseline":
                target = spec.baseline_version
            records.append({"rollout_id": rid, "device_id": d, "wave": wanted[d], "target_version": target,
                            "previous_model": dev["model"] or dev["desired_model"],
                            "previous_version": dev["version"] or dev["desired_version"], "assigned_at": now})
        self.repo.add_devices(records)
        self._publish(spec, records)

    def _publish(self, spec: RolloutSpec, records: list[dict[str, Any]]) -> None:
        groups: dict[tuple[str, str], list[str]] = {}
        for r in records:
            key = (r["previous_model"], r["previous_version"]) if spec.mode is Mode.SHADOW else (spec.model, r["target_version"])
            groups.setdefault(key, []).append(r["device_id"])
        shadow = (spec.model, spec.version) if spec.mode is Mode.SHADOW else None
        capture = self.capture_policies(spec.capture) if spec.capture and self.capture_policies else None
        for (model, version), ids in groups.items():
            self.devices.assign(ids, model, version, self.publish, shadow=shadow, **({"capture": capture} if capture else {}))

    def _restore(self, rid: int, touched: dict[str, dict[str, Any]]) -> None:
        """Every touched device back to the version it ran before the rollout (without any shadow)."""
        groups: dict[tuple[str, str], list[str]] = {}
        for d, rec in touched.items():
            if rec["previous_version"] and rec["rolled_back_at"] is None:
                groups.setdefault((rec["previous_model"], rec["previous_version"]), []).append(d)
        self.repo.mark_rolled_back(rid)
        for (model, version), ids in groups.items():
            self.devices.assign(ids, model, version, self.publish)

    def _cohort(self, spec: RolloutSpec) -> dict[str, int]:
        ids = [d["id"] for d in self.devices.list(tag=spec.selector or None)]
        return cohorts.members(ids, spec.waves, len(spec.waves) - 1)

    def _refuse_overlap(self, cohort: dict[str, int]) -> None:
        for other in self._rows():
            if other["state"] not in ACTIVE_STATES:
                continue
            theirs = set(self._cohort(RolloutSpec.from_dict(other["spec"]))) | set(self._touched(other["id"]))
            shared = sorted(theirs & set(cohort))
            if shared:
                raise ConflictError(f"rollout {other['id']} ({other['model']} {other['version']}, {other['state']}) "
                                    f"already targets {len(shared)} of these devices (e.g. {', '.join(shared[:3])}); "
                                    f"finish, abort or roll it back first")

    def _busy(self, exclude: int) -> set[str]:
        return self.repo.busy(exclude)

    def _touched(self, rid: int) -> dict[str, dict[str, Any]]:
        return self.repo.touched(rid)

    # -- gates -------------------------------------------------------------------------------------
    def _evaluate(self, row: dict[str, Any], spec: RolloutSpec, wave: dict[str, Any]) -> Evaluation:
        touched = self._touched(row["id"])
        rows = self.telemetry.rows_since(wave["started_at"], model=spec.model)
        failures = self._failures(row, touched)
        manifest = (self.catalog.get(spec.model, spec.version) or {}).get("manifest")
        candidates = {d for d, rec in touched.items() if rec["target_version"] == spec.version}
        new_rows = [r for r in rows if r["device_id"] in candidates and (r["version"] == spec.version or spec.mode is Mode.SHADOW)]
        if spec.mode is Mode.AB:
            baseline_ids = {d for d, rec in touched.items() if rec["target_version"] == spec.baseline_version}
            old_rows = [r for r in rows if r["device_id"] in baseline_ids and r["version"] == spec.baseline_version]
        else:
            selected = {d["id"] for d in self.devices.list(tag=spec.selector or None)}
            old_rows = [r for r in rows if r["device_id"] in selected and r["version"] != spec.version]
        # Both groups are compared over the same span, after the wave's devices have switched: installs load
        # the devices (and, simulated, their host), and the message of the switch mixes both versions.
        switched = {d for d in candidates if touched[d]["assigned_at"] >= wave["started_at"]}
        since = _settled_at(new_rows, switched, set(failures), wave["started_at"], spec.soak_s)
        new_rows = [r for r in new_rows if r["received_at"] > since]
        old_rows = [r for r in old_rows if r["received_at"] > since]
        window = Window(new_rows, old_rows, sum(failures.values()), len(candidates), manifest, row["baseline"])
        ev = evaluate(spec.mode, spec.gates, window)
        if spec.mode is Mode.AB:
            ev.comparison = compare_ab(old_rows, new_rows, spec.baseline_version, spec.version)
        values: dict[str, Any] = {"gates": jsonable(ev.gates), "baseline": jsonable(ev.baseline)}
        if ev.comparison is not None:
            values["comparison"] = jsonable(ev.comparison)
        self.repo.update(row["id"], **values)
        row.update(values)
        return ev

    def _failures(self, row: dict[str, Any], touched: dict[str, dict[str, Any]]) -> dict[str, int]:
        """Install failures of the rollout's version per device, after the device was assigned."""
        out: dict[str, int] = {}
        for e in self.telemetry.events_since(row["created_at"], FAILURE_EVENTS):
            rec = touched.get(e["device_id"])
            payload = e["payload"] or {}
            if rec and payload.get("version") == rec["target_version"] and e["received_at"] >= rec["assigned_at"] \
                    and payload.get("model", row["model"]) == row["model"]:
                out[e["device_id"]] = out.get(e["device_id"], 0) + 1
        return out

    # -- storage -----------------------------------------------------------------------------------
    def _set(self, row: dict[str, Any], action: str, reason: str, numbers: dict[str, Any], **values: Any) -> None:
        self.repo.record(row["id"], action, reason, numbers, **values)
        row.update(values)
        log.info("rollout %s: %s: %s", row["id"], action, reason)

    def _row(self, rid: int) -> dict[str, Any] | None:
        return self.repo.row(rid)

    def _rows(self, state: str | None = None) -> list[dict[str, Any]]:
        return self.repo.rows(state)

    # -- the API's rollout object ------------------------------------------------------------------
    def _object(self, row: dict[str, Any]) -> dict[str, Any]:
        spec = RolloutSpec.from_dict(row["spec"])
        touched = self._touched(row["id"])
        failures = self._failures(row, touched)
        devices = {d["id"]: d for d in self.devices.list()}
        decisions = self.repo.decisions(row["id"])
        status = {d: _device_status(spec, rec, devices.get(d), failures.get(d, 0)) for d, rec in touched.items()}
        waves = []
        for wave in row["waves"]:
            ids = sorted(d for d, rec in touched.items() if rec["wave"] == wave["index"])
            waves.append({**wave, "devices": ids, "installed": sum(status[d] == "installed" for d in ids),
                          "failed": sum(status[d] == "failed" for d in ids)})
        return {
            "id": row["id"], "model": row["model"], "version": row["version"], "mode": row["mode"], "state": row["state"],
            "created_at": row["created_at"], "updated_at": row["updated_at"], "selector": spec.selector, "waves": waves,
            "current_wave": row["current_wave"], "targeted": len(touched),
            "installed": sum(s == "installed" for s in status.values()), "failed": sum(s == "failed" for s in status.values()),
            "gates": row["gates"] or [], "decisions": decisions, "on_failure": spec.on_failure.value,
            "comparison": row["comparison"], "soak_s": spec.soak_s, "thresholds": spec.to_dict()["gates"],
            "ab_percent": spec.ab_percent if spec.mode is Mode.AB else None, "baseline_version": spec.baseline_version,
            "rolled_back": sum(rec["rolled_back_at"] is not None for rec in touched.values()),
        }


def _settled_at(new_rows: list[dict[str, Any]], switched: set[str], failed: set[str], started: float, soak_s: float) -> float:
    """When the last device of this wave reported on the new version (now, while some still install;
    devices still silent SETTLE_WAIT_S after the soak are not waited for)."""
    first: dict[str, float] = {}
    for r in new_rows:
        if r["device_id"] in switched:
            first[r["device_id"]] = min(first.get(r["device_id"], r["received_at"]), r["received_at"])
    now = time.time()
    if switched - set(first) - failed and now < started + soak_s + SETTLE_WAIT_S:
        return now
    return max(first.values(), default=started)


def _device_status(spec: RolloutSpec, rec: dict[str, Any], device: dict[str, Any] | None, failures: int) -> str:
    if device is None:
        return "pending"
    if spec.mode is Mode.SHADOW:
        shadow = (device.get("reported") or {}).get("shadow") or {}
        if shadow.get("version") == spec.version and shadow.get("state") == "active":
            return "installed"
    elif device["version"] == rec["target_version"] and device["state"] == "active":
        return "installed"
    return "failed" if failures else "pending"


def _describe(g: dict[str, Any]) -> str:
    return f"{g['name']} {g['value']:.4g} > {g['threshold']:g}" if isinstance(g["value"], (int, float)) else g["name"]
