"""The `--from-fleet` path of `edgeml train` (options and output), kept out of train/cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeml.errors import UsageError
from edgeml.table import print_table

options = [
    click.option("--from-fleet", "from_fleet", metavar="MODEL[@VERSION]",
                 help="Retrain MODEL from rows captured on the fleet plus the original data of --run-dir, with its recipe."),
    click.option("--fleet-url", envvar="EDGEML_FLEET_SERVER", help="--from-fleet: the fleet API [env EDGEML_FLEET_SERVER]."),
    click.option("--token", "fleet_token", envvar="EDGEML_FLEET_TOKEN", help="--from-fleet: the fleet's API token [env EDGEML_FLEET_TOKEN]."),
    click.option("--since", help="--from-fleet: only rows captured within this period, e.g. 7d [default: all]."),
    click.option("--run-dir", type=click.Path(path_type=Path), help="--from-fleet: the run that produced the version being replaced."),
    click.option("--pseudo-label", is_flag=True,
                 help="--from-fleet: label captured rows without feedback with the old model's predictions [default: refuse]."),
]


def add_options(command):
    for option in reversed(options):
        command = option(command)
    return command


def run(target: str, fleet_url: str | None, token: str | None, since: str | None, run_dir: Path | None,
        pseudo_label: bool, out: Path | None, force: bool, n_jobs: int, as_json: bool) -> None:
    from .compare_runs import comparison_rows
    from .fleet_source import FleetSource, parse_since, split_target
    from .from_fleet import retrain
    from .progress import Reporter

    if not fleet_url:
        raise UsageError("--from-fleet needs --fleet-url URL (or EDGEML_FLEET_SERVER)")
    if run_dir is None:
        raise UsageError("--from-fleet needs --run-dir OLD_RUN (the run the version being replaced was trained by)")
    if out is None:
        raise UsageError("pass --out DIR (the run directory to create)")
    model, version = split_target(target)
    source = FleetSource(fleet_url, token, model, version, parse_since(since) if since else None)
    result = retrain(source, Path(run_dir), Path(out), pseudo_label, force, n_jobs, Reporter(quiet=as_json))
    if as_json:
        click.echo(json.dumps({"out": str(result.out), "data": str(result.data), "comparison": result.comparison}, indent=2))
        return
    c = result.comparison
    print_table(f"{target}: new run {c['new_run']} vs old run {c['old_run']} -> {result.out}",
                ["data", "metric", "old", "new", "delta"], comparison_rows(c))
    click.echo(f"fleet data: {c['fleet_samples']} samples from {c['fleet_rows']} captured requests, labels: {c['label_source']}"
               + (f" ({c['note']})" if c.get("note") else ""))
    click.echo(f"held-out verdict: {'not worse' if c['not_worse'] else 'WORSE'} on {c['primary_metric']} (original test set)")
    click.echo(f"report: {result.out / 'comparison.json'}, data: {result.data}")
