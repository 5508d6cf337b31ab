"""What the rollout engine needs from the rest of the fleet: four narrow collaborators.

The engine sees devices, telemetry, registered models and the MQTT publisher only through these
protocols (fleet/service.py wires in the real ones: DeviceRegistry, TelemetryReader, Registry and
FleetService.publish); its own tables are behind rollouts/repository.py.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence


class Publisher(Protocol):
    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        """Publish one MQTT message."""


class DeviceDirectory(Protocol):
    def list(self, tag: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Devices (id, online, model, version, state, desired_model/version, reported) whose tags match."""

    def assign(self, device_ids: list[str], model: str, version: str, publish: Publisher,
               shadow: tuple[str, str] | None = None, capture: Any = None) -> list[dict[str, Any]]:
        """Make (model, version) the desired version of the devices and publish their signed documents."""


class TelemetryReader(Protocol):
    def rows_since(self, since: float, model: str | None = None) -> list[dict[str, Any]]:
        """Telemetry rows (device_id, model, version, received_at, payload) received at or after `since`."""

    def events_since(self, since: float, kinds: Sequence[str]) -> list[dict[str, Any]]:
        """Device events (device_id, received_at, event, payload) of these kinds received at or after `since`."""


class ModelCatalog(Protocol):
    def get(self, name: str, version: str) -> dict[str, Any] | None:
        """A registered model version (with its "manifest"), or None."""
