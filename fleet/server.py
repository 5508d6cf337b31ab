"""Run the fleet service in the foreground: MQTT, then the HTTP API with uvicorn; stop cleanly on SIGTERM."""

from __future__ import annotations

import logging

import click

from .service import FleetConfig, FleetService


def run_fleet(config: FleetConfig) -> None:
    import uvicorn

    from .api import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = FleetService(config)
    service.start_mqtt()
    click.echo(f"fleet: MQTT {service.broker_url} ({'MQTT 5, shared subscriptions' if service.bus.v5 else 'MQTT 3.1.1'}), "
               f"API http://{config.http_host}:{config.http_port}, data {config.data_dir}", err=True)
    click.echo(f"fleet: devices verify desired documents with {service.public_key_path}", err=True)
    try:
        uvicorn.run(create_app(service), host=config.http_host, port=config.http_port, log_level="warning")
    finally:
        service.stop()
