"""Input/output tensor schemas shared by convert, the bundle and the runtime."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import dtypes
from .errors import UsageError

Shape = list  # list[int | None]; None marks a dynamic axis
MAX_DIM_NAME = 64


@dataclass
class TensorSpec:
    """One input or output tensor. `shape` holds ints and None (dynamic); `dim_names`, when set, runs
    parallel to it and names dynamic axes (e.g. ["batch", "sequence"]; None for an unnamed or fixed axis).

    Inputs whose dynamic axes carry the same name must agree in size at run time (runtime/inputs.py).
    In manifest.json `dim_names` is written only when some axis is named, so manifests without it
    (every older one) stay valid; a shape entry given as a string (e.g. "sequence") also reads as a
    named dynamic axis.
    """

    name: str
    dtype: str  # edgeml dtype name
    shape: list[int | None]
    feature_names: list[str] | None = None  # tabular inputs: the raw column(s) this tensor carries
    dim_names: list[str | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.feature_names:
            d["feature_names"] = list(self.feature_names)
        if self.dim_names and any(self.dim_names):
            d["dim_names"] = list(self.dim_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        shape: list[int | None] = []
        names: list[str | None] = list(d.get("dim_names") or [None] * len(d["shape"]))
        if len(names) != len(d["shape"]):
            raise ValueError(f"tensor {d['name']!r}: dim_names has {len(names)} entries for {len(d['shape'])} axes")
        for axis, dim in enumerate(d["shape"]):
            if isinstance(dim, str):  # a named dynamic axis written in the shape itself
                shape.append(None)
                names[axis] = names[axis] or dim
            elif dim is None or (isinstance(dim, int) and not isinstance(dim, bool)):
                shape.append(dim)
            else:
                raise ValueError(f"tensor {d['name']!r}: bad dimension {dim!r}")
        for axis, dim_name in enumerate(names):
            if dim_name is not None and (not isinstance(dim_name, str) or not 0 < len(dim_name) <= MAX_DIM_NAME):
                raise ValueError(f"tensor {d['name']!r}: dim_names[{axis}] must be a short string or null")
            if dim_name is not None and shape[axis] is not None:
                names[axis] = None  # a fixed axis needs no name to be checked
        return cls(d["name"], d["dtype"], shape, d.get("feature_names"), names if any(names) else None)

    def dim_name(self, axis: int) -> str | None:
        """The name of a dynamic axis, None when it is fixed or unnamed."""
        if not self.dim_names or axis >= len(self.dim_names) or self.shape[axis] is not None:
            return None
        return self.dim_names[axis]

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
