"""The train run manifest that `edgeml train` writes and `edgeml convert RUN_DIR` reads."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ..protocol import ProtocolError
from .fields import (
    MAX_COUNT, MAX_NAME, MAX_LABELS, Json, _object, _int, _num, _str, _text, _list, _opt, _req, _load,
    _relative_path, _Message,
)

RUN_MANIFEST_NAME = "edgeml-run.json"  # the file `edgeml convert` recognises a train run directory by
RUN_FORMAT = "edgeml-run/1"


# -- the train run manifest --------------------------------------------------------------------------
@dataclass(frozen=True)
class RunInput:
    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def to_dict(self) -> Json:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def _run_input(value: Any, name: str) -> RunInput:
    obj = _object(value, name)
    shape = _req(obj, "shape", name, _list, 16)
    return RunInput(_req(obj, "name", name, _str), _req(obj, "dtype", name, _str, 32),
                    tuple(None if d is None else _int(d, f"{name}.shape[{i}]", 0, MAX_COUNT) for i, d in enumerate(shape)))


def _label(value: Any, name: str) -> Any:
    if isinstance(value, str):
        return _text(value, name, MAX_NAME)
    if isinstance(value, bool) or value is None:
        return value
    return _num(value, name, -math.inf)


@dataclass(frozen=True)
class RunManifest(_Message):
    """`RUN_DIR/edgeml-run.json`, written by `edgeml train`, read by `edgeml convert RUN_DIR`.

    File names (model_file, calibration, validation, ...) are normalized paths inside the run directory.
    """

    run_id: str
    framework: str  # "sklearn" or "torch"
    model_file: str
    name: str | None = None  # --run-name; None: convert names the bundle after model_name
    created_at: str | None = None
    task: str | None = None
    model_name: str | None = None
    labels: tuple[Any, ...] | None = None
    target: str | None = None
    inputs: tuple[RunInput, ...] = ()
    calibration: str | None = None
    validation: str | None = None
    label_column: str | None = None
    metrics_file: str | None = None
    reference_file: str | None = None
    report: str | None = None
    metrics: Json = field(default_factory=dict)
    # how the run was made (model, task, target, search, options, data path or dataset, data sha256):
    # `edgeml train --from-fleet` retrains with it (train/recipe.py); {} for runs of older versions
    recipe: Json = field(default_factory=dict)
    format: str = RUN_FORMAT

    FILE_NAME = RUN_MANIFEST_NAME

    @classmethod
    def parse(cls, obj_or_bytes: Any) -> Self:
        obj = _load(obj_or_bytes, "run manifest")
        fmt = _req(obj, "format", "", _str, 64)
        if fmt != RUN_FORMAT:
            raise ProtocolError("unsupported_format", f"run format {fmt[:64]!r} is not {RUN_FORMAT!r}; upgrade edgeml",
                                field="format")
        labels = _opt(obj, "labels", "", _list, MAX_LABELS)
        return cls(
            run_id=_req(obj, "run_id", "", _str), name=_opt(obj, "name", "", _str),
            framework=_req(obj, "framework", "", _str, 32), model_file=_req(obj, "model_file", "", _relative_path),
            created_at=_opt(obj, "created_at", "", _str, 64), task=_opt(obj, "task", "", _str, 32),
            model_name=_opt(obj, "model_name", "", _str), target=_opt(obj, "target", "", _str),
            labels=None if labels is None else tuple(_label(v, f"labels[{i}]") for i, v in enumerate(labels)),
            inputs=tuple(_run_input(v, f"inputs[{i}]") for i, v in enumerate(_opt(obj, "inputs", "", _list) or [])),
            label_column=_opt(obj, "label_column", "", _str),
            **{k: _opt(obj, k, "", _relative_path)
               for k in ("calibration", "validation", "metrics_file", "reference_file", "report")},
            metrics=_opt(obj, "metrics", "", _object) or {}, recipe=_opt(obj, "recipe", "", _object) or {}, format=fmt)

    @classmethod
    def read(cls, run_dir: Path) -> Self:
        """Parse RUN_DIR/edgeml-run.json (OSError when unreadable, ProtocolError when malformed)."""
        data = (Path(run_dir) / RUN_MANIFEST_NAME).read_bytes()
        try:  # not an MQTT message: no message size bound
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ProtocolError("not_json", "the run manifest is not valid JSON") from None
        return cls.parse(obj)

    def to_dict(self) -> Json:
        return {"format": self.format, "run_id": self.run_id, "name": self.name, "created_at": self.created_at,
                "task": self.task, "model_name": self.model_name, "framework": self.framework,
                "model_file": self.model_file, "labels": None if self.labels is None else list(self.labels),
                "target": self.target, "inputs": [i.to_dict() for i in self.inputs], "calibration": self.calibration,
                "validation": self.validation, "label_column": self.label_column, "metrics_file": self.metrics_file,
                "reference_file": self.reference_file, "report": self.report, "metrics": self.metrics,
                "recipe": self.recipe}
