"""What every `edgeml fleet` command that talks to the API shares: --server/--token, the client, k=v parsing."""

from __future__ import annotations

import click

from edgeml.errors import UsageError

from .client import FleetClient

server_option = click.option("--server", envvar="EDGEML_FLEET_SERVER", default="http://127.0.0.1:8000", show_default=True, help="Fleet API URL [env EDGEML_FLEET_SERVER].")
token_option = click.option("--token", envvar="EDGEML_FLEET_TOKEN", help="API token [env EDGEML_FLEET_TOKEN].")


def client(server: str, token: str | None) -> FleetClient:
    return FleetClient(server, token)


def kv(text: str) -> tuple[str, str]:
    """`k=v` of a --selector/--tag option as (k, v)."""
    if "=" not in text:
        raise UsageError(f"selector {text!r}: use k=v")
    k, v = text.split("=", 1)
    return k, v
