"""`edgeml fleet capture`: export captured rows for retraining, delete a device's captured data, show counters."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlencode

import click

from edgeml.errors import UsageError, require

from .cli_options import client as _client
from .cli_options import server_option, token_option

# `--capture RATE[,MAX_PER_HOUR]` / `--capture-exclude NAMES` of `assign` and `rollout start`.
capture_option = click.option("--capture", "capture", metavar="RATE[,MAX_PER_HOUR]",
                              help="Capture this fraction of requests (at most MAX_PER_HOUR per device, default 1000) "
                                   "and upload them to the fleet [default: off].")
exclude_option = click.option("--capture-exclude", "capture_exclude", default="", metavar="NAMES",
                              help="Comma-separated input or tabular column names never captured.")


def capture_body(capture: str | None, exclude: str) -> dict | None:
    """The API's `capture` member for the options (None: off); a bad value is a UsageError here."""
    from .capture import CaptureRequest

    if capture is None:
        if exclude:
            raise UsageError("--capture-exclude needs --capture RATE")
        return None
    return CaptureRequest.parse_cli(capture, exclude).to_dict()


@click.group("capture")
def capture() -> None:
    """Data captured on devices: export it for retraining, delete a device's data."""


@capture.command("delete")
@click.argument("device")
@server_option
@token_option
def delete(device: str, server: str, token: str | None) -> None:
    """Delete every captured row of DEVICE."""
    result = _client(server, token).request("DELETE", f"/api/v1/capture/{device}")
    click.echo(f"{device}: deleted {result['deleted']} captured rows")


@capture.command("export")
@click.argument("target", metavar="MODEL[@VERSION]")
@click.option("--since", default=None, help="Only rows captured within this period, e.g. 7d, 12h [default: all].")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Output .parquet file.")
@server_option
@token_option
def export(target: str, since: str | None, out: Path, server: str, token: str | None) -> None:
    """Write the captured rows of MODEL (one version with MODEL@VERSION) to a Parquet file.

    Columns: device_id, model, version, request_id, ts (capture time, epoch seconds), received_at, and
    inputs / outputs as JSON text ({name: {dtype, shape, data, features?}}).
    """
    if out.suffix != ".parquet":
        raise UsageError(f"--out {out}: write a .parquet file")
    from .capture import parse_duration, split_model

    model, version = split_model(target)
    query = {"model": model, **({"version": version} if version else {})}
    if since is not None:
        query["since"] = str(time.time() - parse_duration(since, "--since"))
    pa = require("pyarrow", "train")
    import pyarrow.parquet as pq

    client, after, rows = _client(server, token), 0, []
    while True:
        page = client.get(f"/api/v1/capture/rows?{urlencode({**query, 'after': after})}")
        rows += page["rows"]
        if page["next"] is None:
            break
        after = page["next"]
    columns = {k: [r[k] for r in rows] for k in ("device_id", "model", "version", "request_id", "ts", "received_at")}
    for k in ("inputs", "outputs"):
        columns[k] = [json.dumps(r[k], separators=(",", ":")) for r in rows]
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(pa.table(columns, schema=pa.schema([("device_id", pa.string()), ("model", pa.string()),
                                                      ("version", pa.string()), ("request_id", pa.string()),
                                                      ("ts", pa.float64()), ("received_at", pa.float64()),
                                                      ("inputs", pa.string()), ("outputs", pa.string())])), tmp)
    tmp.replace(out)  # never a half-written file under the final name
    click.echo(f"wrote {len(rows)} captured rows of {target} to {out}")


@capture.command("stats")
@server_option
@token_option
def stats(server: str, token: str | None) -> None:
    """Stored rows and upload counters (batches, rows, rejected by reason, dropped on devices, purged)."""
    click.echo(json.dumps(_client(server, token).get("/api/v1/capture/stats"), indent=2))
