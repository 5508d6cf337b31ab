"""`edgeml fleet retrain-policy`: store a model's retrain policy, see its runs, run it by hand."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import click

from edgeml.table import print_table

from .cli_options import client as _client
from .cli_options import server_option, token_option


class _PolicyGroup(click.Group):
    """`retrain-policy MODEL --on …` sets the policy; `retrain-policy status|run MODEL` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["set", *args]
        return super().parse_args(ctx, args)


@click.group("retrain-policy", cls=_PolicyGroup)
def retrain_policy() -> None:
    """Retrain MODEL when a monitor fires: `retrain-policy MODEL --on drift --then convert,push[,rollout] --run-dir RUN`.

    The fleet runs `edgeml train --from-fleet`, `edgeml convert`, `edgeml fleet push` and (when the new model is
    not worse on the original test set) `edgeml fleet rollout start` as subprocesses; paths are on the fleet host.
    """


@retrain_policy.command("set")
@click.argument("model")
@click.option("--on", "on", required=True, help="Trigger: drift (a version's drift level reaches alert).")
@click.option("--then", "then", required=True, help="Chain after training: convert,push or convert,push,rollout.")
@click.option("--run-dir", required=True, type=click.Path(path_type=Path),
              help="The train run of the version being replaced (on the fleet host).")
@click.option("--since", default="7d", show_default=True, help="Captured rows within this period.")
@click.option("--pseudo-label", is_flag=True, help="Label rows without feedback with the old model's predictions.")
@click.option("--sign-key", type=click.Path(path_type=Path), help="Key signing the new bundle (on the fleet host).")
@click.option("--waves", default="5,25,100", show_default=True, help="Rollout waves.")
@click.option("--soak", default="60s", show_default=True, help="Rollout soak per wave.")
@server_option
@token_option
def set_policy(model: str, on: str, then: str, run_dir: Path, since: str, pseudo_label: bool, sign_key: Path | None,
               waves: str, soak: str, server: str, token: str | None) -> None:
    """Store MODEL's retrain policy (replacing any)."""
    body = {"on": on, "then": [s.strip() for s in then.split(",") if s.strip()], "run_dir": str(run_dir.resolve()),
            "since": since, "pseudo_label": pseudo_label, "sign_key": str(sign_key.resolve()) if sign_key else None,
            "waves": waves, "soak": soak}
    stored = _client(server, token).request("PUT", f"/api/v1/retrain-policies/{quote(model)}", body)
    click.echo(f"{model}: retrain on {stored['on']}, then {','.join(stored['then'])} (run {stored['run_dir']})")


@retrain_policy.command("status")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@server_option
@token_option
def status(model: str, as_json: bool, server: str, token: str | None) -> None:
    """MODEL's policy and its latest runs (state, new version, held-out verdict)."""
    found = _client(server, token).get(f"/api/v1/retrain-policies/{quote(model)}")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    p = found["policy"]
    click.echo(f"{model}: on {p['on']}, then {','.join(p['then'])}, run {p['run_dir']}"
               + (" (a run is going)" if found["running"] else ""))
    rows = [[r["id"], r["trigger"], r["version"] or "-", r["state"], r["new_version"] or "-",
             _verdict(r.get("detail") or {}), r.get("error") or (r.get("detail") or {}).get("reason") or ""]
            for r in found["runs"]]
    print_table(f"retrain runs of {model}", ["run", "trigger", "replaced", "state", "new version", "held-out", "note"], rows)


def _verdict(detail: dict) -> str:
    c = detail.get("comparison")
    if not c:
        return "-"
    held = c["datasets"].get("original_test", {})
    m = c["primary_metric"]
    return f"{m} {held.get('old', {}).get(m, 0):.3f} -> {held.get('new', {}).get(m, 0):.3f}"


@retrain_policy.command("run")
@click.argument("target", metavar="MODEL[@VERSION]")
@server_option
@token_option
def run(target: str, server: str, token: str | None) -> None:
    """Run MODEL's chain now (as if its monitor fired); `status` shows the outcome."""
    model, _, version = target.partition("@")
    body = {"version": version} if version else {}
    started = _client(server, token).post(f"/api/v1/retrain-policies/{quote(model)}/run", body)
    click.echo(f"{model}: retrain run {started['run']} started (`edgeml fleet retrain-policy status {model}`)")


@retrain_policy.command("delete")
@click.argument("model")
@server_option
@token_option
def delete(model: str, server: str, token: str | None) -> None:
    """Remove MODEL's retrain policy (its run records stay)."""
    _client(server, token).request("DELETE", f"/api/v1/retrain-policies/{quote(model)}")
    click.echo(f"{model}: retrain policy removed")
