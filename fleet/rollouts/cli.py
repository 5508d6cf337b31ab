"""`edgeml fleet rollout`: start staged, A/B and shadow rollouts, watch them, pause/resume/abort/roll back."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from edgeml.errors import UsageError
from edgeml.table import print_table

from ..cli_options import client as _client
from ..cli_options import kv as _kv
from ..capture_cli import capture_body, capture_option, exclude_option
from ..cli_options import server_option, token_option

DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    match = DURATION_RE.match(text)
    if not match:
        raise UsageError(f"--soak {text!r}: use a duration like 90s, 2m, 1h or 500ms")
    return float(match.group(1)) * UNITS[match.group(2)]


def parse_waves(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise UsageError(f"--waves {text!r}: use comma-separated percentages, e.g. 5,25,100") from None


@click.group()
def rollout() -> None:
    """Staged rollouts with health gates and automatic rollback; A/B and shadow deployments."""


@rollout.command("start")
@click.argument("model")
@click.argument("version")
@click.option("--selector", multiple=True, help="k=v device tag selector; repeatable [default: every device].")
@click.option("--waves", default="5,25,100", show_default=True, help="Cumulative percentages of the cohort per wave.")
@click.option("--soak", default="60s", show_default=True, help="Soak time per wave before its gates decide.")
@click.option("--max-error-rate", type=float, default=0.01, show_default=True)
@click.option("--max-p99-ratio", type=float, default=1.5, show_default=True, help="p99 latency new / previous version.")
@click.option("--max-install-failures", type=int, default=1, show_default=True)
@click.option("--max-drift-psi", type=float, default=0.25, show_default=True)
@click.option("--min-reporting", type=int, default=3, show_default=True, help="Devices with telemetry before a gate can pass.")
@click.option("--on-failure", type=click.Choice(["rollback", "pause"]), default="rollback", show_default=True)
@click.option("--ab", "ab_percent", type=float, help="A/B: percent of the cohort on VERSION, the rest on --baseline.")
@click.option("--baseline", "baseline_version", help="A/B: the version the other arm runs.")
@click.option("--shadow", is_flag=True, help="Install VERSION beside the active model and mirror requests to it.")
@capture_option
@exclude_option
@server_option
@token_option
@click.option("--json", "as_json", is_flag=True)
def start(model: str, version: str, selector: tuple[str, ...], waves: str, soak: str, max_error_rate: float,
          max_p99_ratio: float, max_install_failures: int, max_drift_psi: float, min_reporting: int, on_failure: str,
          ab_percent: float | None, baseline_version: str | None, shadow: bool, capture: str | None,
          capture_exclude: str, server: str, token: str | None, as_json: bool) -> None:
    """Roll MODEL VERSION out to the devices matching --selector, wave by wave."""
    if shadow and (ab_percent is not None or baseline_version):
        raise UsageError("--shadow and --ab/--baseline are different modes: give one")
    if (ab_percent is None) != (baseline_version is None):
        raise UsageError("an A/B rollout needs both --ab PERCENT and --baseline VERSION")
    mode = "shadow" if shadow else "ab" if ab_percent is not None else "staged"
    body = {"model": model, "version": version, "selector": dict(_kv(s) for s in selector), "waves": parse_waves(waves),
            "soak_s": parse_duration(soak), "on_failure": on_failure, "mode": mode,
            "gates": {"max_error_rate": max_error_rate, "max_p99_ratio": max_p99_ratio,
                      "max_install_failures": max_install_failures, "max_drift_psi": max_drift_psi,
                      "min_reporting": min_reporting}}
    if mode == "ab":
        body.update(ab_percent=ab_percent, baseline_version=baseline_version)
    body["capture"] = capture_body(capture, capture_exclude)
    result = _client(server, token).post("/api/v1/rollouts", body)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"rollout {result['id']}: {model} {version} ({mode}) {result['state']}, wave 0 "
               f"({result['waves'][0]['percent']:g}%) on {len(result['waves'][0]['devices'])} devices")


@rollout.command("status")
@click.argument("rollout_id", required=False, type=int)
@server_option
@token_option
@click.option("--json", "as_json", is_flag=True)
def status(rollout_id: int | None, server: str, token: str | None, as_json: bool) -> None:
    """List rollouts, or show one: waves, gates against thresholds, decisions."""
    client = _client(server, token)
    result = client.get(f"/api/v1/rollouts/{rollout_id}" if rollout_id is not None else "/api/v1/rollouts")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if rollout_id is None:
        print_table("rollouts", ["id", "model", "version", "mode", "state", "wave", "targeted", "installed", "failed"],
                    [[r["id"], r["model"], r["version"], r["mode"], r["state"], _wave_text(r), r["targeted"],
                      r["installed"], r["failed"]] for r in result])
        return
    _show(result)


def _wave_text(r: dict[str, Any]) -> str:
    w = r["waves"][r["current_wave"]]
    return f"{r['current_wave']} ({w['percent']:g}%, {w['state']})"


def _show(r: dict[str, Any]) -> None:
    click.echo(f"rollout {r['id']}: {r['model']} {r['version']} ({r['mode']}) {r['state']}, "
               f"on failure {r['on_failure']}, selector {r['selector'] or 'all devices'}")
    print_table("waves", ["wave", "percent", "state", "devices", "installed", "failed"],
                [[w["index"], w["percent"], w["state"], len(w["devices"]), w["installed"], w["failed"]] for w in r["waves"]])
    print_table("gates", ["gate", "value", "threshold", "passed"],
                [[g["name"], g["value"], g["threshold"], g["passed"]] for g in r["gates"]])
    print_table("decisions", ["action", "reason"], [[d["action"], d["reason"]] for d in r["decisions"]])
    if r.get("comparison"):
        click.echo("comparison: " + json.dumps(r["comparison"], default=str))


def _action(name: str, help_text: str) -> None:
    @rollout.command(name, help=help_text)
    @click.argument("rollout_id", type=int)
    @server_option
    @token_option
    def command(rollout_id: int, server: str, token: str | None) -> None:
        result = _client(server, token).post(f"/api/v1/rollouts/{rollout_id}/{name}")
        click.echo(f"rollout {rollout_id}: {result['state']}")


for _name, _help in (("pause", "Pause rollout ROLLOUT_ID (no new wave opens)."),
                     ("resume", "Resume a paused rollout (its current wave soaks again)."),
                     ("abort", "Stop rollout ROLLOUT_ID; devices keep the version they have."),
                     ("rollback", "Roll every device ROLLOUT_ID touched back to its previous version.")):
    _action(_name, _help)
