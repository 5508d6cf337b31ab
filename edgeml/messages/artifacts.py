"""The bundle manifest's per-artifact record and its file entries."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Self

from .fields import Json, _object, _int, _num, _str, _list, _opt, _req, _bool, _load, _relative_path

# -- the bundle manifest's per-artifact record -------------------------------------------------------
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_TOLERANCE_KEYS = ("atol", "rtol", "min_agreement", "max_metric_drop", "max_rel_error", "max_nrmse", "min_cosine_mean",
                   "min_cosine_min", "min_box_iou", "min_score_agreement")  # finite, >= 0 (null: not enforced)
_NUMERIC_VALIDATION = ("max_abs_error", "top1_agreement", "metric_source", "metric_artifact", "metric_delta",
                       "relative_error", "cosine_mean", "cosine_min", "box_iou", "score_agreement")


@dataclass
class FileEntry:
    """One file of a bundle: a normalized relative path, its sha256 and size."""

    path: str  # relative to the bundle root, with forward slashes
    sha256: str
    size: int

    def to_dict(self) -> Json:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}

    @classmethod
    def parse(cls, obj: Any, where: str = "file") -> Self:
        obj = _object(_load(obj, where), where)
        return cls(_req(obj, "path", where, _relative_path), _req(obj, "sha256", where, _str, 64, SHA256_RE),
                   _req(obj, "size", where, _int))

    from_dict = parse


def _json_object(value: Any, name: str) -> Json:
    """A free-form JSON object whose known numeric entries are finite numbers (or null)."""
    obj = _object(value, name)
    for key in _NUMERIC_VALIDATION:
        _opt(obj, key, name, _num, -math.inf)
    return obj


@dataclass
class ArtifactDetails:
    """One (format, precision) artifact of a bundle: its files, the backend that runs it, its validation
    against the source model, its latency, and exporter details (io_dtype, fixed_batch, ...)."""

    format: str  # "onnx", "tflite", "openvino"
    precision: str  # "fp32", "fp16", "int8"
    backend: str  # runtime backend that runs it: "onnxruntime", "litert", "openvino"
    path: str  # the file a backend loads, relative to the bundle root
    files: list[FileEntry] = field(default_factory=list)
    validation: Json = field(default_factory=dict)
    latency: Json = field(default_factory=dict)
    details: Json = field(default_factory=dict)  # quantization settings, fixed shapes, ...

    @property
    def key(self) -> str:
        return f"{self.format}/{self.precision}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> Json:
        return {"format": self.format, "precision": self.precision, "backend": self.backend, "path": self.path,
                "size": self.size, "files": [f.to_dict() for f in self.files], "validation": self.validation,
                "latency": self.latency, "details": self.details}

    @classmethod
    def parse(cls, obj: Any, where: str = "artifact") -> Self:
        obj = _object(_load(obj, where), where)
        files = [FileEntry.parse(f, f"{where}.files[{i}]") for i, f in enumerate(_list(obj.get("files") or [], f"{where}.files"))]
        validation = _json_object(obj.get("validation") or {}, f"{where}.validation")
        _opt(validation, "passed", f"{where}.validation", _bool)
        tolerance = _opt(validation, "tolerance", f"{where}.validation", _object)
        for k in _TOLERANCE_KEYS:
            _opt(tolerance or {}, k, f"{where}.validation.tolerance", _num)
        latency = _object(obj.get("latency") or {}, f"{where}.latency")
        for k, v in latency.items():
            if not isinstance(v, str) and not isinstance(v, (list, dict)) and v is not None:
                _num(v, f"{where}.latency.{k}")
        details = _object(obj.get("details") or {}, f"{where}.details")
        _opt(details, "io_dtype", f"{where}.details", _str, 32)
        _opt(details, "fixed_batch", f"{where}.details", _int, 1)
        _opt(details, "slower_than_fp32", f"{where}.details", _bool)
        return cls(_req(obj, "format", where, _str, 32), _req(obj, "precision", where, _str, 32),
                   _req(obj, "backend", where, _str, 64), _req(obj, "path", where, _relative_path),
                   files, validation, latency, details)

    from_dict = parse


