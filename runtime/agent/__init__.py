"""The device agent: `edgeml serve --fleet` joins a fleet, installs desired versions crash-safely and
reports state and telemetry over MQTT. Device-side only: paho-mqtt, psutil, numpy, the runtime."""

from .agent import AgentConfig, DeviceAgent

__all__ = ["AgentConfig", "DeviceAgent"]
