"""`edgeml serve --fleet`: validate the fleet options first, seed the store, start the device agent."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgeml.bundle import read_manifest
from edgeml.errors import UsageError
from edgeml.messages import Reported
from edgeml.mqtt import BrokerAddress
from edgeml.protocol import ProtocolError, valid_device_id

from .integrity import public_key
from .selection import Preference
from .server import Daemon


def parse_tags(text: str) -> dict[str, str]:
    tags = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise UsageError(f"--tags {text!r}: use k=v,k=v")
        k, v = item.split("=", 1)
        tags[k.strip()] = v.strip()
    try:  # the tags travel in the reported document: they must fit its contract
        Reported.parse({"state": "idle", "tags": tags})
    except ProtocolError as exc:
        raise UsageError(f"--tags {text!r}: {exc.detail}") from None
    return tags


def start_agent(daemon: Daemon, bundle: Path | None, fleet_url: str, device_id: str | None, store: Path | None,
                tags: str, verify_key: Path | None, fleet_key: Path | None, interval: float, insecure: bool,
                backend: Any, precision: Any, threads: int | None, download: Any = None):
    from .agent import AgentConfig, DeviceAgent
    from .agent.store import DeviceStore

    if not device_id or not valid_device_id(device_id):
        raise UsageError("--fleet needs --device-id (letters, digits, '.', '_' and '-')")
    login = BrokerAddress.parse(fleet_url).username  # also checks the URL's form
    if login is not None and login != device_id:  # brokers set up by `edgeml fleet provision` refuse any other
        raise UsageError(f"--fleet logs in as {login!r}: a device's MQTT username is its --device-id ({device_id!r})")
    if store is None:
        raise UsageError("--fleet needs --store DIR for installed versions and state")
    if verify_key is None and not insecure:
        raise UsageError("--fleet needs --verify-key PUB (the key bundles and desired documents are signed with); "
                         "--insecure skips signature checks")
    bundle_key = public_key(verify_key) if verify_key else None
    desired_key = public_key(fleet_key) if fleet_key else bundle_key
    config = AgentConfig(fleet_url, device_id, store, parse_tags(tags), bundle_key, desired_key, interval,
                         preference=Preference.resolve(backend, precision), threads=threads)
    if download is not None:  # DownloadLimits: deadline and minimum rate of one install's downloads
        config.download = download
    if bundle is not None:
        _seed(DeviceStore(store), bundle)
    agent = DeviceAgent(config, daemon.holder)
    daemon.state.observer = agent.recorder
    return agent.start()


def _seed(store: Any, bundle: Path) -> None:
    """A BUNDLE given with --fleet becomes the active version of an empty store."""
    if store.active_dir() is not None:
        return
    m = read_manifest(bundle)
    target = store.version_dir(m.name, m.version)
    if not target.exists():
        staging = store.staging_dir()
        shutil.copytree(bundle, staging, dirs_exist_ok=True)
        target = store.commit_staging(staging, m.name, m.version)
    store.activate(target)
