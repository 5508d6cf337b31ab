"""Headless Chromium for the dashboard tests (Debian's chromium driven by Playwright; `playwright install`
is never needed) and a few helpers shared with scripts/screenshots.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def login(page: Any, base_url: str, token: str, next_path: str = "/dashboard/") -> None:
    """Log in through the login page and land on next_path."""
    page.goto(f"{base_url}/dashboard/login?next={next_path}")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}")


def start_simulation(broker_url: str, root: Path, keys: tuple[Path, Path], devices: int, tags: dict[str, str],
                     prefix: str, traffic: Path | None = None, interval: float = 0.3, rps: float = 10.0) -> Any:
    """`devices` simulated devices (the real agent, in this process) with the given tags."""
    from edgeml.runtime.agent.simulate import Simulation, SimulationConfig, load_traffic
    from edgeml.signing import load_public_key
    from fleet_fixtures import device_login

    pub = load_public_key(keys[1])
    config = SimulationConfig(devices, broker_url, root / f"sim-{prefix}-{time.time_ns()}", pub, pub, tags, prefix, rps,
                              interval, traffic=load_traffic(traffic) if traffic else None,
                              broker_login=lambda device_id: device_login(broker_url, device_id))
    return Simulation(config).start()
