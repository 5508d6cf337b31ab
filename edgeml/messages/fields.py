"""Field checks shared by the message contracts: limits, typed getters, strict number/string/list checks."""

from __future__ import annotations

import math
import re
from typing import Any

from ..protocol import ProtocolError, canonical_json, parse_json


MAX_SEQ = 2**63  # sequence numbers are non-negative and below this (they fit a signed 64-bit column)
MAX_COUNT = 2**53  # counts stay exact as JSON numbers
MAX_TIME = 1e11  # seconds since the epoch (year 5138): anything beyond is garbage
MAX_NAME = 256  # model, version, feature, tag and artifact names
MAX_URL = 2048
MAX_TEXT = 4096  # error and detail messages
MAX_BINS = 1024  # histogram bins and buckets
MAX_ITEMS = 1024  # entries of other lists and objects (features, tags, files)
MAX_LABELS = 100_000  # class labels of a classifier
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # states, event names, reasons

Json = dict[str, Any]


# -- field checks ------------------------------------------------------------------------------------
def _bad(name: str, what: str) -> ProtocolError:
    return ProtocolError("bad_schema", f"field {name!r} {what}", field=name)


def _object(value: Any, name: str, max_items: int = MAX_ITEMS) -> Json:
    if not isinstance(value, dict):
        raise _bad(name, "must be a JSON object")
    if len(value) > max_items:
        raise _bad(name, f"has more than {max_items} entries")
    return value


def _get(obj: Json, key: str, where: str, required: bool) -> Any:
    """The value of `key` (None when absent or null); a required field may be neither."""
    value = obj.get(key)
    if value is None and required:
        raise ProtocolError("bad_schema", f"missing field {_join(where, key)!r}", field=_join(where, key))
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _int(value: Any, name: str, lo: int = 0, hi: int = MAX_COUNT) -> int:
    if type(value) is not int:
        raise _bad(name, "must be an integer")
    if not lo <= value < hi:
        raise _bad(name, f"must be in [{lo}, {hi})")
    return value


def _num(value: Any, name: str, lo: float = 0.0, hi: float = math.inf, lo_open: bool = False) -> float:
    """A finite real number in [lo, hi] ((lo, hi] with lo_open); ints stay ints (same JSON bytes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, "must be a number")
    if not math.isfinite(value):
        raise _bad(name, "must be finite")
    if value < lo or (lo_open and value == lo) or value > hi:
        raise _bad(name, f"must be in {'(' if lo_open else '['}{lo}, {hi}]")
    return value


def _str(value: Any, name: str, max_len: int = MAX_NAME, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise _bad(name, "must be a string")
    if not value or len(value) > max_len:
        raise _bad(name, f"must be a non-empty string of at most {max_len} characters")
    if pattern is not None and not pattern.match(value):
        raise _bad(name, f"has an invalid value {value[:64]!r}")
    return value


def _text(value: Any, name: str, max_len: int = MAX_TEXT) -> str:
    """Free text: may be empty, bounded."""
    if not isinstance(value, str):
        raise _bad(name, "must be a string")
    if len(value) > max_len:
        raise _bad(name, f"is longer than {max_len} characters")
    return value


def _list(value: Any, name: str, max_len: int = MAX_ITEMS) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(name, "must be a list")
    if len(value) > max_len:
        raise _bad(name, f"has more than {max_len} items")
    return value


def _counts(value: Any, name: str, length: int | None = None) -> tuple[int, ...]:
    items = _list(value, name, MAX_BINS)
    if length is not None and len(items) != length:
        raise _bad(name, f"must hold {length} counts, not {len(items)}")
    return tuple(_int(v, f"{name}[{i}]") for i, v in enumerate(items))


def _opt(obj: Json, key: str, where: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    value = obj.get(key)
    return None if value is None else check(value, _join(where, key), *args, **kwargs)


def _req(obj: Json, key: str, where: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    return check(_get(obj, key, where, True), _join(where, key), *args, **kwargs)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, "must be true or false")
    return value


def _load(obj_or_bytes: Any, what: str) -> Json:
    if isinstance(obj_or_bytes, (bytes, bytearray, memoryview)):
        return parse_json(bytes(obj_or_bytes))
    if isinstance(obj_or_bytes, str):
        return parse_json(obj_or_bytes.encode())
    if not isinstance(obj_or_bytes, dict):
        raise ProtocolError("bad_schema", f"{what} must be a JSON object", field=what)
    return obj_or_bytes


def _relative_path(value: Any, name: str) -> str:
    """A file inside a directory: relative, '/'-separated, normalized (no '.', '..' or empty parts)."""
    path = _str(value, name, 1024)
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or "\0" in path or ":" in parts[0] \
            or any(p in ("", ".", "..") for p in parts):
        raise ProtocolError("unsafe_path", f"field {name!r} must be a normalized relative path inside the bundle; "
                            f"{path[:64]!r} points outside the bundle or is not normalized", field=name)
    return path


def clip(text: str | None, max_len: int = MAX_TEXT) -> str | None:
    """Free text cut to what a contract accepts (producers clip error details before sending)."""
    return text if text is None or len(text) <= max_len else text[: max_len - 3] + "..."


def _drop_none(d: Json) -> Json:
    return {k: v for k, v in d.items() if v is not None}


class _Message:
    """to_json() for the JSON contracts: canonical bytes of to_dict()."""

    def to_dict(self) -> Json:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

