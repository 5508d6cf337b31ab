"""`edgeml fleet` as the CLI shows it: fleet's command group plus `simulate` (app layer).

`simulate` runs real device agents (edgeml.runtime) against a fleet, so it cannot live in edgeml.fleet,
which never imports the runtime; this entry module may import both and joins them.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from edgeml.fleet.cli import fleet
from edgeml.fleet.cli_options import client, server_option, token_option

__all__ = ["fleet", "simulate"]


@click.command("simulate")
@click.option("--devices", type=click.IntRange(1, 5000), default=10, show_default=True)
@server_option
@token_option
@click.option("--broker", "broker_url", help="MQTT broker [default: the one the fleet API reports].")
@click.option("--verify-key", type=click.Path(path_type=Path), help="Key bundles are signed with [default: the fleet's key].")
@click.option("--insecure", is_flag=True, help="Skip signature checks on the simulated devices.")
@click.option("--tags", default="", help="Tags of every simulated device, k=v,k=v.")
@click.option("--rps", type=float, default=5.0, show_default=True, help="Synthetic requests per second per device.")
@click.option("--telemetry-interval", type=float, default=5.0, show_default=True)
@click.option("--duration", type=float, help="Stop after this many seconds [default: until Ctrl-C].")
@click.option("--store", type=click.Path(path_type=Path), default=Path("edgeml-sim"), show_default=True, help="Root of the devices' stores.")
@click.option("--id-prefix", default="sim", show_default=True)
@click.option("--traffic", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Requests drawn from this .npz (arrays keyed by input name) [default: the active bundle's golden samples].")
def simulate(devices, server, token, broker_url, verify_key, insecure, tags, rps, telemetry_interval, duration, store, id_prefix,
             traffic) -> None:
    """Run N simulated devices (the real device agent, one process) serving a synthetic load."""
    from edgeml.runtime.agent.simulate import Simulation, SimulationConfig, load_traffic
    from edgeml.runtime.fleet_mode import parse_tags
    from edgeml.signing import load_public_key

    api = client(server, token)
    info = api.get("/api/v1/broker")
    # The embedded broker admits only provisioned devices: give each simulated device fresh credentials.
    login = None
    if info.get("provisioned_login") and not broker_url:
        def login(device_id: str) -> str:
            return api.post(f"/api/v1/devices/{device_id}/provision")["device_url"]
    fleet_key = None
    if not insecure:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        fleet_key = load_pem_public_key(info["fleet_public_key"].encode())
    bundle_key = load_public_key(verify_key) if verify_key else fleet_key
    sim = Simulation(SimulationConfig(devices, broker_url or info["url"], store, bundle_key, fleet_key, parse_tags(tags),
                                      id_prefix, rps, telemetry_interval,
                                      traffic=load_traffic(traffic) if traffic else None, broker_login=login)).start()
    click.echo(f"{devices} simulated devices on {broker_url or info['url']} (stores under {store}); Ctrl-C stops", err=True)
    try:
        deadline = time.monotonic() + duration if duration else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


fleet.add_command(simulate)
