"""`edgeml demo`: run the whole pipeline on this machine and print what happened."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import click

from .table import human_size, print_table


@click.command("demo")
@click.option("--devices", type=click.IntRange(1, 500), default=20, show_default=True, help="Simulated devices.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Fleet API and dashboard port.")
@click.option("--dir", "root", type=click.Path(path_type=Path), default=Path("edgeml-demo"), show_default=True,
              help="Where everything is written (replaced if it holds an earlier demo).")
@click.option("--keep", is_flag=True, help="Keep the fleet, devices and dashboard running until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(devices: int, port: int, root: Path, keep: bool, as_json: bool) -> None:
    """Train, convert, deploy and roll out a model to simulated devices, all on this machine."""
    from . import demo as d

    config = d.DemoConfig(root=d.prepare_dir(root), devices=devices, port=port)
    state = d.DemoState()
    started = time.monotonic()
    say = (lambda msg: None) if as_json else (lambda msg: click.echo(f"[{time.monotonic() - started:6.1f}s] {msg}", err=True))
    say(f"edgeml demo: writing everything under {config.root}")
    try:
        d.train_and_convert(config, state, say)
        d.start_fleet(config, state, say)
        d.start_devices(config, state, say)
        d.push_and_install(config, state, say)
        d.roll_out(config, state, say)
        result = d.summary(config, state)
        _print(result, as_json, keep)
        if keep:
            click.echo(f"\nDashboard: {result['dashboard']}  (token: {result['token']})\nRunning until Ctrl-C.", err=True)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
        else:
            click.echo("\nStopped and cleaned up (run with --keep to keep the fleet and dashboard up; Ctrl-C stops them).", err=True)
    finally:
        d.stop(state)


def _print(result: dict, as_json: bool, keep: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    print_table("artifacts of demo 2.0.0", ["format", "precision", "size", "latency ms", "accuracy", "agreement"],
                [[f["format"], f["precision"], human_size(f["size"]), f["latency_ms"], f["accuracy"], f["agreement"]]
                 for f in result["formats"]])
    r = result["rollout"] or {}
    print_table("fleet", ["devices online", "versions", "backends", "rollout", "on 2.0.0"],
                [[result["devices_online"], ", ".join(f"{v}: {n}" for v, n in result["versions"].items()),
                  ", ".join(f"{b}: {n}" for b, n in result["backends"].items()),
                  f"{r.get('id')} {r.get('state')}", f"{r.get('installed')}/{r.get('targeted')}"]])
    where = f"dashboard: {result['dashboard']} (log in with the token {result['token']})" if keep else \
        "dashboard: stops with the demo; run `edgeml demo --keep` to browse it"
    click.echo(f"{where}; everything is under {result['directory']}")
