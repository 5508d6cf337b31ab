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
@click.option("--max-connections", default=256, show_default=True, type=click.IntRange(min=1), help="Open connections; beyond, the oldest idle or slow one is closed (503 only when all are busy).")
@click.option("--max-connections-per-client", default=64, show_default=True, type=click.IntRange(min=0), help="Open connections from one client address, the same way (0 = no limit).")
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.01), help="Seconds from a request's first byte to the end of its head (408 beyond).")
@click.option("--body-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.01), help="Seconds for a request body, plus 1 s per 64 KiB (408 beyond).")
@click.option("--idle-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.01), help="Seconds a keep-alive connection may sit idle.")
@click.option("--cache", "cache_size", default=0, show_default=True, type=click.IntRange(min=0), help="Prediction cache: keep the outputs of the last N distinct inputs (0 = off; emptied on a model swap).")
@click.option("--grace", default=10.0, show_default=True, type=click.FloatRange(min=0), help="Seconds in-flight requests get to finish on SIGTERM/SIGINT.")
@click.option("--fleet", "fleet_url", envvar="EDGEML_FLEET",
              help="Join a fleet through its MQTT broker, mqtt://DEVICE:PASSWORD@HOST:PORT (`edgeml fleet provision` prints it) [env EDGEML_FLEET].")
@click.option("--device-id", help="This device's id in the fleet (letters, digits, . _ -).")
@click.option("--store", type=click.Path(path_type=Path), help="Device store directory (installed versions, state, outbox).")
@click.option("--tags", default="", help="Device tags k=v,k=v (rollout selectors match them).")
@click.option("--fleet-key", type=click.Path(path_type=Path), help="Public key of the fleet's desired documents [default: --verify-key].")
@click.option("--telemetry-interval", default=10.0, show_default=True, type=click.FloatRange(min=0.05), help="Seconds between telemetry messages.")
@click.option("--insecure", is_flag=True, help="Fleet mode without signature checks (never in production).")
@click.option("--download-deadline", default=600.0, show_default=True, type=click.FloatRange(min=1), help="Fleet mode: seconds all downloads of one install may take.")
@click.option("--download-min-rate", default=1024.0, show_default=True, type=click.FloatRange(min=0), help="Fleet mode: slowest accepted download, bytes/s over 10 s windows (0 = no minimum).")
def serve(bundle: Path | None, host: str, port: int, unix_socket: Path | None, backend: str, precision: str,
          threads: int | None, verify_key: Path | None, max_batch: int, max_delay_ms: float,
          max_body_mb: float, max_inflight: int, max_connections: int, max_connections_per_client: int,
          header_timeout: float, body_timeout: float, idle_timeout: float, cache_size: int, grace: float, fleet_url: str | None, device_id: str | None,
          store: Path | None, tags: str, fleet_key: Path | None, telemetry_interval: float, insecure: bool,
          download_deadline: float, download_min_rate: float) -> None:
    """Serve BUNDLE over the Open Inference Protocol (KServe v2 REST) with Prometheus /metrics.

    Endpoints: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/versions/V][/ready],
    POST /v2/models/NAME[/versions/V]/infer, GET /metrics. Stops gracefully on SIGTERM or Ctrl-C.
    Infer takes JSON or the binary tensor data extension (Inference-Header-Content-Length), as
    Triton and KServe clients send it. Slow clients get 408 after --header-timeout/--body-timeout;
    idle and slow connections make room for new ones, so slowloris floods cannot lock others out.
    """
    from .batching import BatchOptions
    from .model import load
    from .server import Daemon, ServeConfig, ServerLimits

    config = ServeConfig(
        host=host, port=port, unix_socket=str(unix_socket) if unix_socket else None,
        limits=ServerLimits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_inflight=max_inflight,
                            max_connections=max_connections, max_connections_per_client=max_connections_per_client,
                            header_timeout=header_timeout, body_timeout=body_timeout, idle_timeout=idle_timeout),
        batch=BatchOptions(max_batch, max_delay_ms).check(), grace_seconds=grace, cache_size=cache_size,
    )
    daemon = Daemon(config)
    agent = None
    if fleet_url:
        from .agent.download import DownloadLimits
        from .fleet_mode import start_agent

        agent = start_agent(daemon, bundle, fleet_url, device_id, store, tags, verify_key, fleet_key,
                            telemetry_interval, insecure, backend, precision, threads,
                            DownloadLimits(deadline_s=download_deadline, min_rate=download_min_rate))
    elif bundle is None:
        raise UsageError("give a BUNDLE to serve, or --fleet (with --device-id and --store) to join a fleet")
    else:
        daemon.holder.swap(load(bundle, backend=backend, precision=precision, threads=threads, verify_key=verify_key))
    daemon.start()
    gc.freeze()  # everything loaded so far is long-lived: keep it out of the collector's scans (fewer latency spikes)
    model = daemon.holder.model
    batching = f", micro-batching up to {max_batch} within {max_delay_ms:g} ms" if max_batch > 1 else ""
    batching += f", prediction cache of {cache_size}" if cache_size else ""
    what = f"{model.info.name} {model.info.version} ({model.info.format}/{model.info.precision} on {model.info.backend}{batching})" if model else "no model yet (not ready)"
    fleet_note = f", device {device_id} of fleet {_redacted(fleet_url)}" if fleet_url else ""
    click.echo(f"edgeml serve: {what} at {daemon.url}{fleet_note}; SIGTERM or Ctrl-C stops", err=True)
    sys.stderr.flush()
    try:
        finished = daemon.serve_until_signal()
    finally:
        if agent is not None:
            agent.stop()
    click.echo("edgeml serve: stopped" + ("" if finished else f" (requests still running after {grace:g} s were cut off)"), err=True)


def _redacted(url: str) -> str:
    from edgeml.mqtt import redact_url  # the password never reaches the log

    return redact_url(url)
