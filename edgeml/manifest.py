"""The bundle manifest: everything a device or the fleet needs to know about a model version.

Field meanings are fixed by DESIGN.md ("The bundle"). Each artifact entry (`ArtifactEntry`, the typed
contract `edgeml.messages.ArtifactDetails`) and the samples file entry are parsed strictly when a manifest
is read: bounded strings, normalized relative paths, sha256 digests, finite numbers. Reference statistics
and metrics are kept as plain JSON-able dicts produced by the modules that compute them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import BundleError, IntegrityError
from .messages import ArtifactDetails, FileEntry
from .messages.fields import _load, _object, _req, _str
from .protocol import ProtocolError
from .schema import TensorSpec

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
SAMPLES_NAME = "samples.npz"
ARTIFACTS_DIR = "artifacts"


# The per-artifact record is a typed contract shared with the fleet and the device (edgeml.messages).
ArtifactEntry = ArtifactDetails


@dataclass
class FailedTarget:
    """A requested (format, precision) that is not in the bundle (no file shipped), and why.

    stage: "export" (the exporter or quantizer failed or crashed) or "validation" (the artifact missed
    its task's bound; `validation` holds its report).
    """

    format: str
    precision: str
    backend: str
    stage: str
    reason: str
    validation: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.format}/{self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "precision": self.precision, "backend": self.backend, "stage": self.stage,
                "reason": self.reason, "validation": self.validation}

    @classmethod
    def parse(cls, obj: Any, where: str = "failed") -> "FailedTarget":
        obj = _object(_load(obj, where), where)
        return cls(_req(obj, "format", where, _str, 32), _req(obj, "precision", where, _str, 32),
                   _req(obj, "backend", where, _str, 64), _req(obj, "stage", where, _str, 32),
                   _req(obj, "reason", where, _str, 4000), _object(obj.get("validation") or {}, f"{where}.validation"))


TEXT_ROLES = ("input_ids", "attention_mask", "token_type_ids")  # what a text model's inputs may mean


@dataclass
class TokenizerEntry:
    """The tokenizer a text bundle carries (a Hugging Face `tokenizers` JSON file inside the bundle).

    `file` is hashed like every other file, so the signed manifest covers it. `inputs` maps each role
    the tokenizer fills (input_ids, attention_mask, token_type_ids) to the model input that takes it;
    `text_input` is the name raw text arrives under (`Model.predict({"text": [...]})`, an OIP BYTES
    tensor); `max_length` truncates longer texts (None: no limit known).
    """

    file: FileEntry
    inputs: dict[str, str]
    text_input: str = "text"
    max_length: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file.to_dict(), "inputs": dict(self.inputs), "text_input": self.text_input,
                "max_length": self.max_length}

    @classmethod
    def parse(cls, obj: Any, where: str = "tokenizer") -> "TokenizerEntry":
        obj = _object(_load(obj, where), where)
        roles = _object(_req(obj, "inputs", where, _object), f"{where}.inputs")
        if "input_ids" not in roles or any(r not in TEXT_ROLES or not isinstance(n, str) or not n for r, n in roles.items()):
            raise ValueError(f"{where}.inputs must map input_ids (and optionally attention_mask, token_type_ids) "
                             "to input names")
        max_length = obj.get("max_length")
        if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
            raise ValueError(f"{where}.max_length must be a positive integer or null")
        text_input = obj.get("text_input", "text")
        if not isinstance(text_input, str) or not 0 < len(text_input) <= 128:
            raise ValueError(f"{where}.text_input must be a short string")
        return cls(FileEntry.parse(obj.get("file"), f"{where}.file"), dict(roles), text_input, max_length)


@dataclass
class Manifest:
    name: str
    version: str
    created_at: str
    task: str  # "classification", "regression", "embedding", "detection", "clustering", "other"
    source: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[Any] | None = None
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    samples: FileEntry | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    failed: list[FailedTarget] = field(default_factory=list)  # requested targets not shipped, with reasons
    lineage: dict[str, Any] | None = None  # where the model came from: source URI, MLflow/train run ids, data sha256
    tokenizer: TokenizerEntry | None = None  # text models: the tokenizer file and what the inputs mean
    format_version: int = FORMAT_VERSION

    def artifact(self, format: str, precision: str) -> ArtifactEntry:
        for a in self.artifacts:
            if a.format == format and a.precision == precision:
                return a
        have = ", ".join(a.key for a in self.artifacts) or "none"
        raise BundleError(f"bundle {self.name}-{self.version} has no {format}/{precision} artifact (has: {have})")

    def all_files(self) -> list[FileEntry]:
        files = [f for a in self.artifacts for f in a.files]
        return self.support_files() + files

    def support_files(self) -> list[FileEntry]:
        """Files a device needs besides its one artifact: the golden samples and the tokenizer."""
        return ([self.samples] if self.samples else []) + ([self.tokenizer.file] if self.tokenizer else [])

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
            "failed": [f.to_dict() for f in self.failed],
            "lineage": self.lineage,
            **({"tokenizer": self.tokenizer.to_dict()} if self.tokenizer else {}),
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
                artifacts=[ArtifactDetails.parse(a, f"artifacts[{i}]") for i, a in enumerate(d.get("artifacts") or [])],
                samples=FileEntry.parse(d["samples"], "samples") if d.get("samples") else None,
                reference=d.get("reference", {}), metrics=d.get("metrics", {}),
                failed=[FailedTarget.parse(f, f"failed[{i}]") for i, f in enumerate(d.get("failed") or [])],
                lineage=_lineage(d.get("lineage")), format_version=version,
                tokenizer=TokenizerEntry.parse(d["tokenizer"]) if d.get("tokenizer") else None,
            )
        except ProtocolError as exc:
            # A path escaping the bundle is tampering, not a typo: refuse it as an integrity failure.
            error = IntegrityError if exc.reason == "unsafe_path" else BundleError
            raise error(f"manifest.json is malformed: {exc.detail}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"manifest.json is malformed: {exc!r}") from None

    @classmethod
    def from_json_bytes(cls, data: bytes) -> "Manifest":
        try:
            return cls.from_dict(json.loads(data))
        except json.JSONDecodeError as exc:
            raise BundleError(f"manifest.json is not valid JSON: {exc}") from None


def _lineage(value: Any) -> dict[str, Any] | None:
    """An optional flat mapping of short strings (or null); anything else is a malformed manifest."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 32 or not all(
            isinstance(k, str) and (v is None or (isinstance(v, str) and len(v) <= 2000)) for k, v in value.items()):
        raise ValueError("lineage must be a mapping of names to strings")
    return dict(value)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
