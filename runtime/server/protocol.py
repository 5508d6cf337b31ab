"""The Open Inference Protocol (KServe v2) JSON bodies, independent of the HTTP server.

Field names and datatype strings follow the protocol exactly: metadata tensors are
`{"name", "datatype", "shape"}` with -1 for a dynamic axis; an inference request is
`{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?: [{"name"}]}`
with `data` in row-major order (flat or nested) and BYTES elements as JSON strings; the response is
`{"model_name", "model_version", "id"?, "outputs": [{"name", "shape", "datatype", "data"}]}`.
Client mistakes raise `ProtocolError(status, message)`, answered as `{"error": message}`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from edgeml import __version__, dtypes
from edgeml.errors import DataError
from edgeml.schema import TensorSpec

SERVER_NAME = "edgeml"
EXTENSIONS: list[str] = []


class ProtocolError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": dtypes.dtype(spec.dtype).oip,
            "shape": [-1 if d is None else int(d) for d in spec.shape]}


def model_metadata(model) -> dict[str, Any]:
    info = model.info
    return {
        "name": info.name,
        "versions": [info.version],
        "platform": f"{info.backend}_{info.format}",
        "inputs": [tensor_metadata(s) for s in model.inputs],
        "outputs": [tensor_metadata(s) for s in model.outputs],
    }


class InferCodec:
    """Decode infer requests and encode responses for one model; built once per served model."""

    def __init__(self, model) -> None:
        self.model = model
        self.model_name = model.info.name
        self.model_version = model.info.version
        self.input_specs = {s.name: s for s in model.inputs}
        self.expected = {s.name: dtypes.dtype(s.dtype) for s in model.inputs}
        self.output_names = [s.name for s in model.outputs]
        self.output_set = frozenset(self.output_names)

    # -- requests ---------------------------------------------------------------------------------

    def decode(self, body: bytes) -> tuple[dict[str, np.ndarray], list[str], Any]:
        """Return (checked feeds, output names to return, request id or None)."""
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(request, dict):
            raise ProtocolError(400, "request body must be a JSON object with an \"inputs\" array")
        tensors = request.get("inputs")
        if not isinstance(tensors, list) or not tensors:
            raise ProtocolError(400, "request needs a non-empty \"inputs\" array of {name, shape, datatype, data}")
        arrays: dict[str, np.ndarray] = {}
        for i, tensor in enumerate(tensors):
            name, array = self._decode_tensor(i, tensor)
            if name in arrays:
                raise ProtocolError(400, f"input {name!r} appears twice in \"inputs\"")
            arrays[name] = array
        self._check_names(arrays)
        try:
            feeds = self.model.prepare(arrays)
        except DataError as exc:
            raise ProtocolError(400, exc.message) from None
        return feeds, self._requested(request.get("outputs")), request.get("id")

    def _decode_tensor(self, i: int, tensor: Any) -> tuple[str, np.ndarray]:
        if not isinstance(tensor, dict):
            raise ProtocolError(400, f"inputs[{i}] must be an object with name, shape, datatype and data")
        missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
        if missing:
            raise ProtocolError(400, f"inputs[{i}] lacks {', '.join(missing)} (each input needs name, shape, datatype, data)")
        name, shape, datatype, data = tensor["name"], tensor["shape"], tensor["datatype"], tensor["data"]
        if not isinstance(name, str):
            raise ProtocolError(400, f"inputs[{i}].name must be a string")
        _check_shape_and_datatype(name, shape, datatype)
        expected = self.expected.get(name)
        if expected is not None and not _compatible(dtypes.BY_OIP[datatype], expected):
            spec = self.input_specs[name]
            raise ProtocolError(400, f"input {name!r}: datatype {datatype} cannot feed the model's {expected.oip} "
                                     f"input (shape {tensor_metadata(spec)['shape']})")
        return name, tensor_array(name, shape, datatype, data)

    def _check_names(self, arrays: dict[str, np.ndarray]) -> None:
        unknown = [n for n in arrays if n not in self.input_specs]
        missing = [n for n in self.input_specs if n not in arrays]
        if unknown or missing:
            parts = ([f"unknown input(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                    ([f"missing input(s) {', '.join(map(repr, missing))}"] if missing else [])
            raise ProtocolError(400, "; ".join(parts) + f"; model {self.model_name} takes {', '.join(self.input_specs)}")

    def _requested(self, outputs: Any) -> list[str]:
        if outputs is None:
            return self.output_names
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise ProtocolError(400, "\"outputs\" must be an array of objects with a \"name\"")
        names = [o["name"] for o in outputs]
        unknown = [n for n in names if n not in self.output_set]
        if unknown:
            raise ProtocolError(400, f"unknown output(s) {', '.join(map(repr, unknown))}; model {self.model_name} "
                                     f"has {', '.join(self.output_names)}")
        return names or self.output_names

    # -- responses --------------------------------------------------------------------------------

    def encode(self, outputs: dict[str, np.ndarray], names: list[str], request_id: Any) -> bytes:
        response: dict[str, Any] = {"model_name": self.model_name, "model_version": self.model_version}
        if request_id is not None:
            response["id"] = request_id
        response["outputs"] = [_tensor(name, outputs[name]) for name in names]
        return dumps(response)


def _compatible(given: dtypes.DType, expected: dtypes.DType) -> bool:
    if given.name == expected.name:
        return True
    if "string" in (given.name, expected.name):
        return False
    want = np.dtype(expected.numpy)
    have = np.dtype(given.numpy)
    return want.kind == "f" or np.can_cast(have, want, "safe") or (have.kind == "b" and want.kind in "iu")


def _check_shape_and_datatype(name: str, shape: Any, datatype: Any) -> None:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(400, f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    if datatype not in dtypes.BY_OIP:
        raise ProtocolError(400, f"input {name!r}: unknown datatype {datatype!r}; use one of {', '.join(dtypes.BY_OIP)}")


def tensor_array(name: str, shape: Any, datatype: Any, data: Any) -> np.ndarray:
    """The array an OIP tensor describes: row-major data (flat or nested) of `datatype`, reshaped."""
    _check_shape_and_datatype(name, shape, datatype)
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(400, f"input {name!r}: BYTES data must be JSON strings")
        arr = np.array(flat, dtype=str) if flat else np.empty(0, dtype=str)
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError):
            raise ProtocolError(400, f"input {name!r}: data must be a (nested) array of numbers of equal lengths") from None
        kind = arr.dtype.kind
        want = np.dtype(dtypes.BY_OIP[datatype].numpy)
        if kind not in "biuf" or (kind == "f" and want.kind != "f") or (kind in "iu" and want.kind == "b"):
            got = "strings" if kind in "USO" else f"{arr.dtype.name} values"
            raise ProtocolError(400, f"input {name!r}: datatype {datatype} but data holds {got}")
        arr = arr.reshape(-1)
        if want.kind in "iu" and kind in "iu" and arr.size:
            info = np.iinfo(want)
            if arr.min() < info.min or arr.max() > info.max:
                raise ProtocolError(400, f"input {name!r}: values out of range for datatype {datatype}")
        arr = arr.astype(want)
    if arr.size != count:
        raise ProtocolError(400, f"input {name!r}: shape {shape} holds {count} elements but data has {arr.size}")
    return arr.reshape(shape)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _tensor(name: str, value: np.ndarray) -> dict[str, Any]:
    arr = np.asarray(value)
    if arr.dtype.kind in "USO":
        data = [v.decode() if isinstance(v, bytes) else str(v) for v in arr.reshape(-1).tolist()]
        datatype = "BYTES"
    else:
        data = arr.reshape(-1).tolist()
        datatype = _OIP_BY_NUMPY.get(arr.dtype) or _oip_name(arr.dtype)
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}


_OIP_BY_NUMPY: dict[np.dtype, str] = {}  # filled as output dtypes are met: the lookup by name is slow


def _oip_name(dt: np.dtype) -> str:
    name = _OIP_BY_NUMPY[dt] = dtypes.from_numpy(dt).oip
    return name
