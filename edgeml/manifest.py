"""The bundle manifest: everything a device or the fleet needs to know about a model version.

Field meanings are fixed by DESIGN.md ("The bundle"). Validation results, latency, reference statistics
and metrics are kept as plain JSON-able dicts produced by the modules that compute them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import BundleError
from .schema import TensorSpec

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
SAMPLES_NAME = "samples.npz"
ARTIFACTS_DIR = "artifacts"


@dataclass
class FileEntry:
    path: str  # relative to the bundle root, with forward slashes
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FileEntry":
        return cls(d["path"], d["sha256"], int(d["size"]))


@dataclass
class ArtifactEntry:
    format: str  # "onnx", "tflite", "openvino"
    precision: str  # "fp32", "fp16", "int8"
    backend: str  # runtime backend that runs it: "onnxruntime", "litert", "openvino"
    path: str  # the file a backend loads, relative to the bundle root
    files: list[FileEntry] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # quantization settings, fixed shapes, ...

    @property
    def key(self) -> str:
        return f"{self.format}/{self.precision}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "backend": self.backend,
            "path": self.path,
            "size": self.size,
            "files": [f.to_dict() for f in self.files],
            "validation": self.validation,
            "latency": self.latency,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArtifactEntry":
        return cls(
            d["format"], d["precision"], d["backend"], d["path"],
            [FileEntry.from_dict(f) for f in d.get("files", [])],
            d.get("validation", {}), d.get("latency", {}), d.get("details", {}),
        )


@dataclass
class Manifest:
    name: str
    version: str
    created_at: str
    task: str  # "classification", "regression", "clustering", "other"
    source: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[Any] | None = None
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    samples: FileEntry | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def artifact(self, format: str, precision: str) -> ArtifactEntry:
        for a in self.artifacts:
            if a.format == format and a.precision == precision:
                return a
        have = ", ".join(a.key for a in self.artifacts) or "none"
        raise BundleError(f"bundle {self.name}-{self.version} has no {format}/{precision} artifact (has: {have})")

    def all_files(self) -> list[FileEntry]:
        files = [f for a in self.artifacts for f in a.files]
        return ([self.samples] if self.samples else []) + files

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "task": self.task,
            "labels": self.labels,
            "source": self.source,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "samples": self.samples.to_dict() if self.samples else None,
            "reference": self.reference,
            "metrics": self.metrics,
        }

    def to_json_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=False, default=_json_default) + "\n").encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        try:
            version = int(d.get("format_version", 0))
            if version != FORMAT_VERSION:
                raise BundleError(f"manifest format_version {version} is not supported (this edgeml reads {FORMAT_VERSION}); upgrade edgeml")
            return cls(
                name=d["name"], version=str(d["version"]), created_at=d["created_at"], task=d["task"],
                source=d.get("source", {}),
                inputs=[TensorSpec.from_dict(t) for t in d["inputs"]],
                outputs=[TensorSpec.from_dict(t) for t in d["outputs"]],
                labels=d.get("labels"),
                artifacts=[ArtifactEntry.from_dict(a) for a in d.get("artifacts", [])],
                samples=FileEntry.from_dict(d["samples"]) if d.get("samples") else None,
                reference=d.get("reference", {}), metrics=d.get("metrics", {}),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"manifest.json is malformed: {exc!r}") from None

    @classmethod
    def from_json_bytes(cls, data: bytes) -> "Manifest":
        try:
            return cls.from_dict(json.loads(data))
        except json.JSONDecodeError as exc:
            raise BundleError(f"manifest.json is not valid JSON: {exc}") from None


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
