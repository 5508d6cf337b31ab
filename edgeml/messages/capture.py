"""Data capture contracts: the policy in the desired document (fleet -> device) and the batches a device
uploads over HTTP (device -> fleet, POST /api/v1/capture/{device_id}).

A captured tensor is {"dtype", "shape", "data" (flat, row-major), "features"?}: `features` names the
columns of a tabular input that were kept (sensitive columns are removed on the device, before a row
is written to its buffer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Self

from .fields import (MAX_ITEMS, MAX_NAME, MAX_TEXT, MAX_TIME, MAX_URL, Json, _bad, _drop_none, _get, _int, _list,
                     _load, _num, _object, _opt, _req, _str, _Message)

MAX_PER_HOUR = 1_000_000  # the largest hourly budget a policy may carry
MAX_BATCH_ROWS = 1000  # rows in one uploaded batch
MAX_TENSOR_VALUES = 1_000_000  # values in one captured tensor
MAX_TENSORS = 64  # inputs (or outputs) of one captured row
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
DTYPE_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class CapturePolicy(_Message):
    """Capture on: sample requests at `rate` (0, 1], at most `max_per_hour` (None: no hourly cap), never
    capturing inputs or tabular columns named in `sensitive`; upload batches to `url` with `token`
    (a per-device bearer token the fleet derives from its signing key: fleet/capture.py)."""

    rate: float
    url: str
    token: str
    max_per_hour: int | None = None
    sensitive: tuple[str, ...] = ()

    @classmethod
    def parse(cls, obj: Any, where: str = "capture") -> Self:
        obj = _object(_load(obj, where), where)
        names = _opt(obj, "sensitive", where, _list, MAX_ITEMS) or []
        return cls(rate=_req(obj, "rate", where, _num, 0.0, 1.0, lo_open=True),
                   url=_req(obj, "url", where, _url), token=_req(obj, "token", where, _str, 128, TOKEN_RE),
                   max_per_hour=_opt(obj, "max_per_hour", where, _int, 1, MAX_PER_HOUR + 1),
                   sensitive=tuple(_str(n, f"{where}.sensitive[{i}]") for i, n in enumerate(names)))

    def to_dict(self) -> Json:
        return _drop_none({"rate": self.rate, "url": self.url, "token": self.token, "max_per_hour": self.max_per_hour,
                           "sensitive": list(self.sensitive) if self.sensitive else None})


def _url(value: Any, name: str) -> str:
    url = _str(value, name, MAX_URL)
    if not url.startswith(("http://", "https://")):
        raise _bad(name, "must be an http(s) URL")
    return url


@dataclass(frozen=True)
class CapturedTensor(_Message):
    dtype: str
    shape: tuple[int, ...]
    data: tuple[Any, ...]
    features: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, obj: Any, where: str) -> Self:
        obj = _object(obj, where)
        shape = tuple(_int(v, f"{where}.shape[{i}]", 0, MAX_TENSOR_VALUES + 1)
                      for i, v in enumerate(_list(_get(obj, "shape", where, True), f"{where}.shape", 8)))
        data = _list(_get(obj, "data", where, True), f"{where}.data", MAX_TENSOR_VALUES)
        if len(data) != math.prod(shape):
            raise _bad(f"{where}.data", f"holds {len(data)} values, the shape {list(shape)} needs {math.prod(shape)}")
        for i, v in enumerate(data):
            if v is None:
                continue  # a missing value (NaN on the device)
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise _bad(f"{where}.data[{i}]", "must be a number, a string or null")
            if isinstance(v, float) and not math.isfinite(v):
                raise _bad(f"{where}.data[{i}]", "must be finite")
            if isinstance(v, str) and len(v) > MAX_TEXT:
                raise _bad(f"{where}.data[{i}]", f"is longer than {MAX_TEXT} characters")
        features = _opt(obj, "features", where, _list, MAX_ITEMS)
        if features is not None:
            features = tuple(_str(f, f"{where}.features[{i}]") for i, f in enumerate(features))
            if not shape or shape[-1] != len(features):
                raise _bad(f"{where}.features", "must name every column of the last axis")
        return cls(_req(obj, "dtype", where, _str, 16, DTYPE_RE), shape, tuple(data), features)

    def to_dict(self) -> Json:
        return _drop_none({"dtype": self.dtype, "shape": list(self.shape), "data": list(self.data),
                           "features": None if self.features is None else list(self.features)})


def _tensors(value: Any, name: str) -> dict[str, CapturedTensor]:
    obj = _object(value, name, MAX_TENSORS)
    return {_str(k, f"{name} key", MAX_NAME): CapturedTensor.parse(v, f"{name}.{k}") for k, v in obj.items()}


@dataclass(frozen=True)
class CapturedRow(_Message):
    request_id: str
    ts: float
    inputs: dict[str, CapturedTensor]
    outputs: dict[str, CapturedTensor]

    @classmethod
    def parse(cls, obj: Any, where: str = "row") -> Self:
        obj = _object(obj, where)
        return cls(_req(obj, "request_id", where, _str, 128, REQUEST_ID_RE), _req(obj, "ts", where, _num, 0.0, MAX_TIME),
                   _req(obj, "inputs", where, _tensors), _req(obj, "outputs", where, _tensors))

    def to_dict(self) -> Json:
        return {"request_id": self.request_id, "ts": self.ts,
                "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
                "outputs": {k: v.to_dict() for k, v in self.outputs.items()}}


@dataclass(frozen=True)
class CaptureBatch(_Message):
    """device -> fleet: captured rows of one model version, and how many rows the device's full buffer dropped."""

    model: str
    version: str
    rows: tuple[CapturedRow, ...]
    dropped: int = 0

    @classmethod
    def parse(cls, obj_or_bytes: Any) -> Self:
        obj = _load(obj_or_bytes, "capture batch")
        rows = _list(_get(obj, "rows", "", True), "rows", MAX_BATCH_ROWS)
        return cls(_req(obj, "model", "", _str), _req(obj, "version", "", _str),
                   tuple(CapturedRow.parse(r, f"rows[{i}]") for i, r in enumerate(rows)),
                   _opt(obj, "dropped", "", _int) or 0)

    def to_dict(self) -> Json:
        return {"model": self.model, "version": self.version, "dropped": self.dropped,
                "rows": [r.to_dict() for r in self.rows]}
