"""Input/output tensor schemas shared by convert, the bundle and the runtime."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import dtypes
from .errors import UsageError

Shape = list  # list[int | None]; None marks a dynamic axis


@dataclass
class TensorSpec:
    name: str
    dtype: str  # edgeml dtype name
    shape: list[int | None]
    feature_names: list[str] | None = None  # tabular inputs: the raw column(s) this tensor carries

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.feature_names:
            d["feature_names"] = list(self.feature_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(d["name"], d["dtype"], list(d["shape"]), d.get("feature_names"))

    @property
    def has_dynamic_batch(self) -> bool:
        return bool(self.shape) and self.shape[0] is None

    def describe(self) -> str:
        dims = "x".join("?" if s is None else str(s) for s in self.shape)
        return f"{self.name}:{self.dtype}:{dims}"


@dataclass
class Schema:
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)


_DYNAMIC = {"?", "-1", "n", "none", "batch", "b"}


def parse_input_spec(text: str) -> TensorSpec:
    """Parse `NAME:DTYPE:SHAPE` (shape `?x3x96x96` or `-1,3,96,96`; `?`, `-1` or `N` = dynamic)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise UsageError(f"--input {text!r}: expected NAME:DTYPE:SHAPE, e.g. input:float32:?x3x96x96")
    name, dt, shape_text = parts
    try:
        dt_name = dtypes.dtype(dt).name
    except ValueError as exc:
        raise UsageError(f"--input {text!r}: {exc}") from None
    shape: list[int | None] = []
    for dim in filter(None, re.split(r"[x,]", shape_text.strip())):
        if dim.strip().lower() in _DYNAMIC:
            shape.append(None)
        elif dim.strip().isdigit() and int(dim) > 0:
            shape.append(int(dim))
        else:
            raise UsageError(f"--input {text!r}: bad dimension {dim!r}; use positive integers or ? for dynamic")
    return TensorSpec(name, dt_name, shape)
