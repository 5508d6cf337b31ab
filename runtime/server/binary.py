"""The Open Inference Protocol binary tensor data extension, as Triton and KServe clients send it.

A request with the header `Inference-Header-Content-Length: N` carries N bytes of JSON, then the
raw data of every input whose `parameters.binary_data_size` is set, in the order of `inputs`:
little-endian, row-major, no padding; BOOL one byte per element; BYTES each element a 4-byte
little-endian unsigned length followed by its bytes. An output is returned in binary when the
request asks for it (`outputs[i].parameters.binary_data`, or `parameters.binary_data_output` for
every output not saying otherwise); the response then carries the same header, `binary_data_size`
on those outputs instead of `data`, and their bytes after the JSON, in the order of `outputs`.
Every malformed piece is a `RequestError` (400).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from edgeml import dtypes

from .errors import RequestError

HEADER = "Inference-Header-Content-Length"
EXTENSION = "binary_tensor_data"
CONTENT_TYPE = "application/octet-stream"
_NUMPY_BY_OIP = {oip: dtypes.to_numpy(d.name) for oip, d in dtypes.BY_OIP.items()}
_LENGTH = struct.Struct("<I")


def split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    """(JSON part, binary part or None) of a request body, by its Inference-Header-Content-Length."""
    if header_length is None:
        return body, None
    text = header_length.strip()
    if not text.isdigit():
        raise RequestError(f"{HEADER} must be a non-negative integer, got {header_length[:40]!r}")
    n = int(text)
    if n > len(body):
        raise RequestError(f"{HEADER} is {n} but the body has only {len(body)} bytes")
    return body[:n], memoryview(body)[n:]


def binary_size(name: str, parameters: Any) -> int | None:
    """The input's `parameters.binary_data_size`, or None when its data is in JSON."""
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise RequestError(f"input {name!r}: \"parameters\" must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RequestError(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
    return size


class BinaryReader:
    """Hands out consecutive slices of a request's binary part, one per binary input."""

    def __init__(self, blob: memoryview | None) -> None:
        self.blob = blob
        self.offset = 0

    def take(self, name: str, size: int) -> memoryview:
        if self.blob is None:
            raise RequestError(f"input {name!r} has binary_data_size but the request has no {HEADER} header")
        end = self.offset + size
        if end > len(self.blob):
            raise RequestError(f"input {name!r}: binary_data_size {size} runs past the end of the body "
                               f"({len(self.blob) - self.offset} bytes left)")
        piece, self.offset = self.blob[self.offset:end], end
        return piece

    def finish(self) -> None:
        if self.blob is not None and self.offset != len(self.blob):
            raise RequestError(f"{len(self.blob) - self.offset} bytes after the JSON header belong to no input "
                               "(the binary_data_size values do not add up to the body)")


def decode(name: str, shape: list[int], datatype: str, raw: memoryview) -> np.ndarray:
    """The array of one binary input, in its OIP datatype."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return np.array(_split_bytes(name, raw, count), dtype=str).reshape(shape) if count else np.empty(shape, str)
    dt = _NUMPY_BY_OIP[datatype]
    want = count * dt.itemsize
    if len(raw) != want:
        raise RequestError(f"input {name!r}: binary_data_size is {len(raw)} bytes but shape {shape} of "
                           f"{datatype} takes {want}")
    if datatype == "BOOL":
        flat = np.frombuffer(raw, np.uint8)
        if flat.size and flat.max() > 1:
            raise RequestError(f"input {name!r}: BOOL elements must be bytes 0 or 1")
        return flat.astype(np.bool_).reshape(shape)
    return np.frombuffer(raw, dt.newbyteorder("<")).astype(dt, copy=False).reshape(shape)


def _split_bytes(name: str, raw: memoryview, count: int) -> list[str]:
    out, offset, end = [], 0, len(raw)
    for _ in range(count):
        if offset + 4 > end:
            raise RequestError(f"input {name!r}: BYTES data ends inside an element's 4-byte length")
        (n,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + n > end:
            raise RequestError(f"input {name!r}: a BYTES element of {n} bytes runs past its binary_data_size")
        try:
            out.append(str(raw[offset:offset + n], "utf-8"))
        except UnicodeDecodeError:
            raise RequestError(f"input {name!r}: BYTES elements must be UTF-8 text") from None
        offset += n
    if offset != end:
        raise RequestError(f"input {name!r}: {end - offset} bytes after its {count} BYTES elements")
    return out


def wanted(request_parameters: Any, outputs: Any) -> set[str]:
    """Names of the outputs the request wants in binary (empty: a plain JSON response)."""
    default = False
    if request_parameters is not None:
        if not isinstance(request_parameters, dict):
            raise RequestError("\"parameters\" must be an object")
        default = _flag(request_parameters, "binary_data_output", "parameters")
    names: set[str] = set()
    explicit: dict[str, bool] = {}
    for o in outputs or ():
        params = o.get("parameters")
        if params is None:
            continue
        if not isinstance(params, dict):
            raise RequestError(f"output {o['name']!r}: \"parameters\" must be an object")
        if "binary_data" in params:
            explicit[o["name"]] = _flag(params, "binary_data", f"output {o['name']!r}")
    names.update(n for n, on in explicit.items() if on)
    if default:
        names.add("*")  # every output not explicitly off
        names.update(f"!{n}" for n, on in explicit.items() if not on)
    return names


def is_binary(name: str, chosen: set[str]) -> bool:
    return name in chosen or ("*" in chosen and f"!{name}" not in chosen)


def _flag(params: dict[str, Any], key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise RequestError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def tensor_bytes(arr: np.ndarray) -> bytes:
    """The binary encoding of one output tensor."""
    if arr.dtype.kind in "USO":
        parts = []
        for v in arr.reshape(-1).tolist():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(_LENGTH.pack(len(b)) + b)
        return b"".join(parts)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8).tobytes()
    return np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()
