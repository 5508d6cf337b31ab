"""`edgeml serve`: the device daemon (Open Inference Protocol REST + Prometheus /metrics).

Imports no web framework, training or conversion code: the standard library's HTTP server, numpy
and the one inference engine the chosen artifact needs.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import click

from edgeml.errors import UsageError

from .cli_predict import backend_help


@click.command("serve")
@click.argument("bundle", type=click.Path(path_type=Path), required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0 = any free port).")
@click.option("--unix-socket", type=click.Path(path_type=Path), help="Listen on this Unix socket instead of TCP.")
@click.option("--backend", default="auto", show_default=True, help=backend_help())
@click.option("--precision", default="auto", show_default=True, help="Precision: auto, fp32, fp16 or int8 (comma-separated = preference order).")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads per inference [default: the engine's].")
@click.option("--verify-key", type=click.Path(path_type=Path), help="Public key (edgeml.pub); the bundle's signature must verify.")
@click.option("--max-batch", default=1, show_default=True, type=click.IntRange(min=1), help="Micro-batching: join up to N samples per backend call (1 = off).")
@click.option("--max-delay-ms", default=2.0, show_default=True, type=click.FloatRange(min=0), help="Micro-batching: wait at most this long for more requests.")
@click.option("--max-body-mb", default=8.0, show_default=True, type=click.FloatRange(min=0.001), help="Largest accepted request body (413 beyond).")
@click.option("--max-inflight", default=64, show_default=True, type=click.IntRange(min=1), help="Inference requests at once (429 beyond).")
@click.option("--grace", default=10.0, show_default=True, type=click.FloatRange(min=0), help="Seconds in-flight requests get to finish on SIGTERM/SIGINT.")
@click.option("--fleet", "fleet_url", help="Join a fleet through its MQTT broker, mqtt://HOST:PORT.")
@click.option("--device-id", help="This device's id in the fleet (letters, digits, . _ -).")
@click.option("--store", type=click.Path(path_type=Path), help="Device store directory (installed versions, state, outbox).")
@click.option("--tags", default="", help="Device tags k=v,k=v (rollout selectors match them).")
@click.option("--fleet-key", type=click.Path(path_type=Path), help="Public key of the fleet's desired documents [default: --verify-key].")
@click.option("--telemetry-interval", default=10.0, show_default=True, type=click.FloatRange(min=0.05), help="Seconds between telemetry messages.")
@click.option("--insecure", is_flag=True, help="Fleet mode without signature checks (never in production).")
def serve(bundle: Path | None, host: str, port: int, unix_socket: Path | None, backend: str, precision: str,
          threads: int | None, verify_key: Path | None, max_batch: int, max_delay_ms: float,
          max_body_mb: float, max_inflight: int, grace: float, fleet_url: str | None, device_id: str | None,
          store: Path | None, tags: str, fleet_key: Path | None, telemetry_interval: float, insecure: bool) -> None:
    """Serve BUNDLE over the Open Inference Protocol (KServe v2 REST) with Prometheus /metrics.

    Endpoints: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/versions/V][/ready],
    POST /v2/models/NAME[/versions/V]/infer, GET /metrics. Stops gracefully on SIGTERM or Ctrl-C.
    """
    from .batching import BatchOptions
    from .model import load
    from .server import Daemon, ServeConfig, ServerLimits

    config = ServeConfig(
        host=host, port=port, unix_socket=str(unix_socket) if unix_socket else None,
        limits=ServerLimits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_inflight=max_inflight),
        batch=BatchOptions(max_batch, max_delay_ms).check(), grace_seconds=grace,
    )
    daemon = Daemon(config)
    agent = None
    if fleet_url:
        from .fleet_mode import start_agent

        agent = start_agent(daemon, bundle, fleet_url, device_id, store, tags, verify_key, fleet_key,
                            telemetry_interval, insecure, backend, precision, threads)
    elif bundle is None:
        raise UsageError("give a BUNDLE to serve, or --fleet (with --device-id and --store) to join a fleet")
    else:
        daemon.holder.swap(load(bundle, backend=backend, precision=precision, threads=threads, verify_key=verify_key))
    daemon.start()
    gc.freeze()  # everything loaded so far is long-lived: keep it out of the collector's scans (fewer latency spikes)
    model = daemon.holder.model
    batching = f", micro-batching up to {max_batch} within {max_delay_ms:g} ms" if max_batch > 1 else ""
    what = f"{model.info.name} {model.info.version} ({model.info.format}/{model.info.precision} on {model.info.backend}{batching})" if model else "no model yet (not ready)"
    fleet_note = f", device {device_id} of fleet {fleet_url}" if fleet_url else ""
    click.echo(f"edgeml serve: {what} at {daemon.url}{fleet_note}; SIGTERM or Ctrl-C stops", err=True)
    sys.stderr.flush()
    try:
        finished = daemon.serve_until_signal()
    finally:
        if agent is not None:
            agent.stop()
    click.echo("edgeml serve: stopped" + ("" if finished else f" (requests still running after {grace:g} s were cut off)"), err=True)
