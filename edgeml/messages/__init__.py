"""Typed contracts for every message that crosses a process boundary.

MQTT documents (`Desired` with its `ShadowSpec`, `Reported`, `Status`, `Telemetry`, `TelemetryAck`, `Event`), the
bundle manifest's per-artifact record (`ArtifactDetails`, with its `FileEntry` list) and the train
run manifest (`RunManifest`, file name `RUN_MANIFEST_NAME`).

Each JSON contract has `parse(obj_or_bytes) -> Self`, a strict check of every field: a number is a
real number (never a bool), finite and inside the stated range; an integer is an `int`; a string is
a string of bounded length; a list or object has a bounded length; histogram counts are
non-negative integers (latency counts one more than the buckets, for +Inf). A failure raises
`edgeml.protocol.ProtocolError("bad_schema", detail)`: the reason stays one bounded counter key,
the detail and `ProtocolError.field` name the field ("latency.counts[3]").

Unknown fields are ignored on parse (an older reader accepts a newer writer's message) and are
never passed on: `to_dict()` / `to_json()` emit only the fields of the contract. `to_json()` is the
canonical JSON devices verify (sorted keys, no spaces), so a `Desired` built here signs to exactly
the bytes `edgeml.protocol.sign_document` gives for the same content.
"""

from ..protocol import ProtocolError
from .artifacts import ArtifactDetails, FileEntry
from .device import (OFFLINE, ONLINE, BundleLocation, Desired, Event, LatencyHistogram, Reported, ShadowSpec, ShadowState,
                     ShadowTelemetry, Status, Telemetry, TelemetryAck)
from .fields import clip
from .run import RUN_FORMAT, RUN_MANIFEST_NAME, RunInput, RunManifest

__all__ = ["ArtifactDetails", "BundleLocation", "Desired", "Event", "FileEntry", "LatencyHistogram", "OFFLINE", "ONLINE",
           "Reported", "RunInput", "RunManifest", "RUN_FORMAT", "RUN_MANIFEST_NAME", "ShadowSpec", "ShadowState",
           "ShadowTelemetry", "Status", "Telemetry", "TelemetryAck", "ProtocolError", "clip"]
