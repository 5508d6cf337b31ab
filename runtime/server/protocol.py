"""The Open Inference Protocol (KServe v2) JSON bodies, independent of the HTTP server.

Field names and datatype strings follow the protocol exactly: metadata tensors are
`{"name", "datatype", "shape"}` with -1 for a dynamic axis; an inference request is
`{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?: [{"name"}]}`
with `data` in row-major order (flat or nested) and BYTES elements as JSON strings; the response is
`{"model_name", "model_version", "id"?, "outputs": [{"name", "shape", "datatype", "data"}]}`.

A request is checked once: each tensor's `data` is decoded to its datatype and cast straight to the
model input's dtype by the rules of `edgeml.tensors` (the same ones `Model.predict` and `edgeml
convert` apply), then only the shape is fitted; the feeds go to the session without another check.
Client mistakes raise `RequestError` (reason "bad_request"), `DataError` ("bad_input") or
`NotFoundError`; runtime/server/http.py maps reasons to statuses and answers `{"error": message}`.
Tensors may instead travel as raw bytes after the JSON (the binary tensor data extension,
runtime/server/binary.py); both kinds mix freely in one request.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeml import __version__, dtypes, tensors
from edgeml.schema import TensorSpec

from . import binary
from .errors import RequestError

SERVER_NAME = "edgeml"
EXTENSIONS: list[str] = [binary.EXTENSION]
_NONE: frozenset[str] = frozenset()
MAX_RANK = 32  # numpy's own limit on dimensions (a longer shape is refused, not a crash)
_NUMPY_BY_OIP = {oip: dtypes.to_numpy(d.name) for oip, d in dtypes.BY_OIP.items()}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    """A metadata tensor; named dynamic axes go under `parameters.dim_names` (parallel to `shape`, null for
    an unnamed axis), so a client sees which inputs share an axis (input_ids and attention_mask: "sequence")."""
    meta: dict[str, Any] = {"name": spec.name, "datatype": dtypes.dtype(spec.dtype).oip,
                            "shape": [-1 if d is None else int(d) for d in spec.shape]}
    if spec.dim_names and any(spec.dim_names):
        meta["parameters"] = {"dim_names": list(spec.dim_names)}
    return meta


def text_metadata(tokenizer: Any) -> dict[str, Any]:
    """The raw text input of a bundle with a tokenizer: one BYTES string per sample, sent alone in place of
    the token tensors it feeds (listed under `parameters.feeds`)."""
    return {"name": tokenizer.text_input, "datatype": "BYTES", "shape": [-1],
            "parameters": {"feeds": sorted(tokenizer.inputs.values())}}


def model_metadata(model) -> dict[str, Any]:
    info = model.info
    inputs = [tensor_metadata(s) for s in model.inputs]
    tokenizer = getattr(getattr(model, "manifest", None), "tokenizer", None)
    if tokenizer is not None and all(i["name"] != tokenizer.text_input for i in inputs):
        inputs.append(text_metadata(tokenizer))
    return {
        "name": info.name,
        "versions": [info.version],
        "platform": f"{info.backend}_{info.format}",
        "inputs": inputs,
        "outputs": [tensor_metadata(s) for s in model.outputs],
    }


@dataclass(slots=True)
class InferRequest:
    """A decoded infer request: feeds ready for the session, the outputs to return and how."""

    feeds: dict[str, np.ndarray]
    outputs: list[str]
    id: Any  # echoed in the response when not None
    binary: frozenset[str]  # outputs to return as binary data (see binary.wanted); empty: all JSON


class InferCodec:
    """Decode infer requests and encode responses for one model; built once per served model."""

    def __init__(self, model) -> None:
        self.model = model
        self.model_name = model.info.name
        self.model_version = model.info.version
        self.checks = {c.name: c for c in model.prepare.checks}  # the model's own input checks
        self.shared = model.prepare.shared  # inputs that share a named axis must agree (None: none do)
        text = getattr(model, "text", None)  # a text bundle also takes one BYTES tensor of raw text
        self.text = text if text is not None and text.text_input not in self.checks else None
        self.output_names = [s.name for s in model.outputs]
        self.output_set = frozenset(self.output_names)

    # -- requests ---------------------------------------------------------------------------------

    def decode(self, body: bytes, header_length: str | None = None) -> InferRequest:
        """Decode a JSON body, or a binary-extension body when `header_length` (the
        Inference-Header-Content-Length header) is given."""
        head, blob = binary.split(body, header_length)
        request = _load_json(head)
        if not isinstance(request, dict):
            raise RequestError("request body must be a JSON object with an \"inputs\" array")
        tensors_in = request.get("inputs")
        if not isinstance(tensors_in, list) or not tensors_in:
            raise RequestError("request needs a non-empty \"inputs\" array of {name, shape, datatype, data}")
        given: dict[str, dict[str, Any]] = {}
        for i, tensor in enumerate(tensors_in):
            name = _tensor_name(i, tensor)
            if name in given:
                raise RequestError(f"input {name!r} appears twice in \"inputs\"")
            given[name] = tensor
        reader = binary.BinaryReader(blob)
        if self.text is not None and len(given) == 1 and self.text.text_input in given:
            feeds = self._decode_text(given[self.text.text_input], reader)
        else:
            self._check_names(given)
            feeds = {name: self._decode_tensor(name, tensor, reader) for name, tensor in given.items()}
        reader.finish()
        if self.shared is not None:
            self.shared(feeds)
        outputs, parameters = request.get("outputs"), request.get("parameters")
        names = self._requested(outputs)
        chosen = frozenset(binary.wanted(parameters, outputs)) if outputs is not None or parameters is not None else _NONE
        return InferRequest(feeds, names, request.get("id"), chosen)

    def _decode_tensor(self, name: str, tensor: dict[str, Any], reader: binary.BinaryReader) -> np.ndarray:
        check = self.checks[name]
        shape, datatype = tensor["shape"], tensor.get("datatype")
        _check_shape_and_datatype(name, shape, datatype)
        tensors.check_dtype(_NUMPY_BY_OIP[datatype], check.dtype, name, f"{datatype} data")
        arr = _tensor_values(name, tensor, shape, datatype, reader)
        if arr.size == 0:
            raise RequestError(f"input {name!r}: shape {shape} holds no elements; send at least one sample")
        # Decoded as its datatype, then cast to the model's dtype (a no-op when they agree); the
        # input check itself then only compares rank and fixed dimensions.
        return check(tensors.cast(arr, check.dtype, name))

    def _decode_text(self, tensor: dict[str, Any], reader: binary.BinaryReader) -> dict[str, np.ndarray]:
        """Raw text (a BYTES tensor named like the bundle's text input) tokenized into the model's inputs."""
        name = self.text.text_input
        shape, datatype = tensor["shape"], tensor.get("datatype")
        _check_shape_and_datatype(name, shape, datatype)
        if datatype != "BYTES":
            raise RequestError(f"input {name!r} carries raw text: send it as BYTES, not {datatype}")
        arr = _tensor_values(name, tensor, shape, datatype, reader)
        if arr.size == 0:
            raise RequestError(f"input {name!r}: shape {shape} holds no texts; send at least one")
        feeds = self.text.encode(arr)
        return {n: self.checks[n](v) for n, v in feeds.items()}

    def _check_names(self, given: dict[str, Any]) -> None:
        unknown = [n for n in given if n not in self.checks]
        missing = [n for n in self.checks if n not in given]
        if unknown or missing:
            parts = ([f"unknown input(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                    ([f"missing input(s) {', '.join(map(repr, missing))}"] if missing else [])
            text = f" (or raw text alone as a BYTES input {self.text.text_input!r})" if self.text is not None else ""
            raise RequestError("; ".join(parts) + f"; model {self.model_name} takes {', '.join(self.checks)}{text}")

    def _requested(self, outputs: Any) -> list[str]:
        if outputs is None:
            return self.output_names
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise RequestError("\"outputs\" must be an array of objects with a \"name\"")
        names = [o["name"] for o in outputs]
        unknown = [n for n in names if n not in self.output_set]
        if unknown:
            raise RequestError(f"unknown output(s) {', '.join(map(repr, unknown))}; model {self.model_name} "
                               f"has {', '.join(self.output_names)}")
        return names or self.output_names

    # -- responses --------------------------------------------------------------------------------

    def encode(self, outputs: dict[str, np.ndarray], request: InferRequest) -> tuple[bytes, int | None]:
        """(body, JSON header length when some outputs are binary, else None)."""
        response: dict[str, Any] = {"model_name": self.model_name, "model_version": self.model_version}
        if request.id is not None:
            response["id"] = request.id
        if not request.binary:
            response["outputs"] = [_tensor(name, outputs[name]) for name in request.outputs]
            return dumps(response), None
        tensors_out, blobs = [], []
        for name in request.outputs:
            if binary.is_binary(name, request.binary):
                arr = np.asarray(outputs[name])
                blob = binary.tensor_bytes(arr)
                tensors_out.append({"name": name, "shape": list(arr.shape), "datatype": _oip_of(arr.dtype),
                                    "parameters": {"binary_data_size": len(blob)}})
                blobs.append(blob)
            else:
                tensors_out.append(_tensor(name, outputs[name]))
        response["outputs"] = tensors_out
        head = dumps(response)
        return head + b"".join(blobs), len(head)


def _load_json(head: bytes) -> Any:
    try:
        return json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError("request body is nested too deeply") from None


def _tensor_name(i: int, tensor: Any) -> str:
    if not isinstance(tensor, dict):
        raise RequestError(f"inputs[{i}] must be an object with name, shape, datatype and data")
    missing = [k for k in ("name", "shape", "datatype") if k not in tensor]
    if missing:
        raise RequestError(f"inputs[{i}] lacks {', '.join(missing)} (each input needs name, shape, datatype, data)")
    if not isinstance(tensor["name"], str):
        raise RequestError(f"inputs[{i}].name must be a string")
    return tensor["name"]


def _tensor_values(name: str, tensor: dict[str, Any], shape: Any, datatype: str,
                   reader: binary.BinaryReader) -> np.ndarray:
    """A tensor's values from its JSON "data" or, with parameters.binary_data_size, from the binary part."""
    size = binary.binary_size(name, tensor.get("parameters"))
    if size is None:
        if "data" not in tensor:
            raise RequestError(f"input {name!r} has neither \"data\" nor parameters.binary_data_size")
        return _decode(name, shape, datatype, tensor["data"])
    if "data" in tensor:
        raise RequestError(f"input {name!r} has both \"data\" and parameters.binary_data_size; send one")
    return binary.decode(name, shape, datatype, reader.take(name, size))


def _check_shape_and_datatype(name: str, shape: Any, datatype: Any) -> None:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RequestError(f"input {name!r}: shape must be a list of non-negative integers, got {_clip(shape)}")
    if len(shape) > MAX_RANK:
        raise RequestError(f"input {name!r}: shape has {len(shape)} dimensions; at most {MAX_RANK} are supported")
    if not isinstance(datatype, str) or datatype not in _NUMPY_BY_OIP:
        raise RequestError(f"input {name!r}: unknown datatype {_clip(datatype)}; use one of {', '.join(dtypes.BY_OIP)}")


def _clip(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def tensor_array(name: str, shape: Any, datatype: Any, data: Any) -> np.ndarray:
    """The array an OIP tensor describes: row-major `data` (flat or nested) as `datatype`, reshaped.

    The JSON values are cast to `datatype` by the rules of `edgeml.tensors` (DataError for a value
    the datatype cannot hold); RequestError for a malformed tensor.
    """
    _check_shape_and_datatype(name, shape, datatype)
    return _decode(name, shape, datatype, data)


def _decode(name: str, shape: list[int], datatype: str, data: Any) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise RequestError(f"input {name!r}: BYTES data must be JSON strings")
        arr = np.array(flat, dtype=str) if flat else np.empty(0, dtype=str)
    else:
        try:
            raw = np.asarray(data)
        except (ValueError, TypeError, RecursionError):
            raise RequestError(f"input {name!r}: data must be a (nested) array of numbers of equal lengths") from None
        arr = tensors.cast(raw.reshape(-1), _NUMPY_BY_OIP[datatype], name)
    if arr.size != count:
        raise RequestError(f"input {name!r}: shape {shape} holds {count} elements but data has {arr.size}")
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
        datatype = _oip_of(arr.dtype)
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}


_OIP_BY_NUMPY: dict[np.dtype, str] = {}  # filled as output dtypes are met: the lookup by name is slow


def _oip_of(dt: np.dtype) -> str:
    name = _OIP_BY_NUMPY.get(dt)
    if name is None:
        name = _OIP_BY_NUMPY[dt] = dtypes.from_numpy(dt).oip
    return name
