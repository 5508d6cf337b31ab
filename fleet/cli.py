"""`edgeml fleet`: run the fleet service and talk to it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeml.errors import UsageError
from edgeml.table import print_table

from .cli_options import client as _client
from .cli_options import kv as _kv
from .cli_options import server_option, token_option
from .capture_cli import capture, capture_body, capture_option, exclude_option
from .retrain_cli import retrain_policy
from .rollouts.cli import rollout


@click.group()
def fleet() -> None:
    """Run the fleet service, push models, assign versions to devices, watch telemetry."""


# `edgeml fleet simulate` runs device agents (edgeml.runtime): it is attached by the app layer, edgeml/fleet_cli.py.


@fleet.command("serve")
@click.option("--db", "db_url", help="Database URL [default: SQLite file under --data]; e.g. postgresql+psycopg://user@host/edgeml.")
@click.option("--broker", "broker_url", help="MQTT broker, mqtt://HOST:PORT [default: start an embedded broker].")
@click.option("--mqtt-port", type=int, default=1883, show_default=True, help="Port of the embedded broker.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address.")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--public-url", help="URL devices use to reach this API [default: http://HOST:PORT].")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("edgeml-fleet"), show_default=True)
@click.option("--token", envvar="EDGEML_FLEET_TOKEN", help="Bearer token the API requires [env EDGEML_FLEET_TOKEN].")
@click.option("--sign-key", type=click.Path(path_type=Path), help="ed25519 key signing desired documents [default: DATA/edgeml.key, created].")
@click.option("--verify-key", type=click.Path(path_type=Path), help="Pushed bundles must be signed by this key.")
@click.option("--prefix", default="edgeml", show_default=True, help="MQTT topic prefix.")
@click.option("--ingest-workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes ingesting telemetry (>1 needs a broker with shared subscriptions: Mosquitto, EMQX).")
@click.option("--desired-validity", type=click.FloatRange(min=2.0), default=24 * 3600.0, show_default=True,
              help="Seconds a signed desired document stays valid; the fleet re-signs it at half-life (devices refuse expired ones).")
@click.option("--insecure-broker", is_flag=True,
              help="Embedded broker without device authentication or topic ACLs (local experiments only).")
@click.option("--capture-retention", default="30d", show_default=True,
              help="Captured rows older than this (by arrival) are purged, e.g. 30d, 12h.")
@click.option("--retrain-check", default="30s", show_default=True,
              help="How often retrain policies look at drift (`edgeml fleet retrain-policy`), e.g. 30s, 5m.")
def serve(db_url, broker_url, mqtt_port, host, http_port, public_url, data_dir, token, sign_key, verify_key, prefix,
          ingest_workers, desired_validity, insecure_broker, capture_retention, retrain_check) -> None:
    """Run the registry, artifact store, MQTT ingest and REST API (and an embedded broker without --broker).

    The embedded broker admits only the fleet and devices provisioned with `edgeml fleet provision`.
    """
    from .capture import parse_duration
    from .server import run_fleet
    from .service import FleetConfig

    retention_s = parse_duration(capture_retention, "--capture-retention")
    retrain_check_s = parse_duration(retrain_check, "--retrain-check")

    if token is not None and not token.strip():
        raise UsageError("--token is empty (or EDGEML_FLEET_TOKEN is set to an empty string): give a real token, "
                         "or leave it unset to run an open API on purpose")
    if token is None:
        click.echo("warning: no --token: the API is open to anyone who can reach it", err=True)
    if insecure_broker and broker_url:
        raise UsageError("--insecure-broker applies to the embedded broker only; configure --broker's own authentication")
    if insecure_broker:
        click.echo("warning: --insecure-broker: the embedded MQTT broker accepts anonymous clients, and any of them "
                   "can read and forge every device's messages", err=True)
    run_fleet(FleetConfig(data_dir=data_dir, db_url=db_url, broker_url=broker_url, mqtt_port=mqtt_port, http_host=host,
                          http_port=http_port, public_url=public_url, token=token, sign_key=sign_key,
                          verify_key=verify_key, prefix=prefix, ingest_workers=ingest_workers,
                          insecure_broker=insecure_broker, extra={"desired_validity_s": desired_validity,
                                                                  "capture_retention_s": retention_s,
                                                                  "retrain_check_s": retrain_check_s}))


@fleet.command("push")
@click.argument("bundle", type=click.Path(path_type=Path))
@server_option
@token_option
def push(bundle: Path, server: str, token: str | None) -> None:
    """Register BUNDLE (its signature and hashes are verified by the fleet)."""
    from edgeml.bundle import verify_bundle

    from .registry import pack_bundle

    verify_bundle(bundle)  # fail early, locally, on a corrupt bundle
    result = _client(server, token).post("/api/v1/models", pack_bundle(bundle), "application/gzip")
    sig = "signature verified" if result["signature_verified"] else "signature NOT verified (fleet has no --verify-key)"
    click.echo(f"registered {result['name']} {result['version']}: {', '.join(result['artifacts'])} ({sig})")


@fleet.command("models")
@server_option
@token_option
@click.option("--json", "as_json", is_flag=True)
def models(server: str, token: str | None, as_json: bool) -> None:
    """List registered model versions."""
    rows = _client(server, token).get("/api/v1/models")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_table("models", ["name", "version", "task", "signed", "artifacts"],
                [[r["name"], r["version"], r["task"], r["signed"], ", ".join(f"{a['format']}/{a['precision']}" for a in r["artifacts"])] for r in rows])


@fleet.command("devices")
@server_option
@token_option
@click.option("--tag", multiple=True, help="k=v filter; repeatable.")
@click.option("--version", help="Only devices running this version.")
@click.option("--json", "as_json", is_flag=True)
def devices(server: str, token: str | None, tag: tuple[str, ...], version: str | None, as_json: bool) -> None:
    """List devices with their state, version and telemetry aggregates."""
    query = "&".join([f"tag={t}" for t in tag] + ([f"version={version}"] if version else []))
    rows = _client(server, token).get("/api/v1/devices" + (f"?{query}" if query else ""))
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    print_table("devices", ["id", "online", "model", "version", "state", "req/s", "err rate", "p99 ms", "drift"],
                [[d["id"], d["online"], d["model"], d["version"], d["state"], d["telemetry"].get("request_rate"),
                  d["telemetry"].get("error_rate"), (d["telemetry"].get("latency_p99_s") or 0) * 1000 or None,
                  (d.get("drift") or {}).get("level")] for d in rows])


@fleet.command("assign")
@click.argument("args", nargs=-1, required=True)
@click.option("--selector", multiple=True, help="k=v device tag selector (instead of DEVICE); repeatable.")
@capture_option
@exclude_option
@server_option
@token_option
def assign(args: tuple[str, ...], selector: tuple[str, ...], capture: str | None, capture_exclude: str, server: str,
           token: str | None) -> None:
    """Set the desired version: `assign DEVICE MODEL VERSION` or `assign --selector k=v MODEL VERSION`."""
    if selector:
        if len(args) != 2:
            raise UsageError("with --selector give MODEL VERSION")
        body = {"selector": dict(_kv(s) for s in selector), "model": args[0], "version": args[1]}
    else:
        if len(args) != 3:
            raise UsageError("give DEVICE MODEL VERSION (or --selector k=v MODEL VERSION)")
        body = {"device": args[0], "model": args[1], "version": args[2]}
    body["capture"] = capture_body(capture, capture_exclude)
    result = _client(server, token).post("/api/v1/assign", body)
    for a in result["assigned"]:
        click.echo(f"{a['device']}: desired {body['model']} {body['version']} (seq {a['seq']})")


@fleet.command("provision")
@click.argument("device")
@server_option
@token_option
@click.option("--json", "as_json", is_flag=True)
def provision(device: str, server: str, token: str | None, as_json: bool) -> None:
    """Create MQTT credentials for DEVICE (replacing earlier ones) and print the Mosquitto configuration.

    The embedded broker uses them at once; for Mosquitto, the output holds the password_file line, the
    acl_file lines of the device and of the fleet's user, and the mosquitto.conf lines that enable them.
    """
    result = _client(server, token).post(f"/api/v1/devices/{device}/provision")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"device {device}: username {result['username']} password {result['password']}")
    if result.get("device_url"):
        click.echo(f"# on the device: edgeml serve --fleet {result['device_url']} --device-id {device} ...")
    click.echo("# Mosquitto only (the embedded broker needs nothing more).")
    click.echo("# mosquitto.conf (once):")
    click.echo("\n".join(result["mosquitto_conf"]))
    click.echo("# append to the password_file:")
    click.echo(result["password_file_line"])
    click.echo("# append to the acl_file (the fleet's user once, give it a password with mosquitto_passwd):")
    click.echo("\n".join(result["acl"]))
    click.echo("")
    click.echo("\n".join(result["fleet_acl"]))


fleet.add_command(rollout)
fleet.add_command(capture)
fleet.add_command(retrain_policy)
