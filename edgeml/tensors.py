"""Tensor values: the one rule set for casting data to an input's dtype, and fixed-batch chunking.

The dtype table (edgeml, numpy, ONNX and Open Inference Protocol spellings) is `edgeml.dtypes`;
this module decides what may become what. `edgeml convert` (calibration/validation data),
`Model.predict` and the OIP decoder of `edgeml serve` all cast through `cast`, so the same value is
accepted or refused with the same message everywhere.

Rules, target <- source:

- same dtype: unchanged (no copy).
- float <- bool, int, uint, float. A finite value that would become inf (float64 1e6 -> float16,
  1e39 -> float32) is refused; NaN and +-inf are values and pass. Large integers may round.
- int/uint <- bool, int, uint when every value fits the target's range. Floats are refused even
  when integral: a float is never rounded or truncated to an integer (round and cast it first).
  (Tiny floats may still underflow to 0 on a narrowing cast, as in every framework.)
- bool <- bool only.
- string <- text (str, UTF-8 bytes; None or NaN in an object array is a missing value, "").
- numbers <- strings and string <- numbers are refused.

A refusal is a `DataError` in one format: `input 'x' expects int32: value 1099511627776 does not
fit (int32 holds -2147483648..2147483647)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import dtypes
from .errors import DataError
from .schema import TensorSpec

Feeds = dict[str, np.ndarray]
_NUMERIC = "biuf"
_TEXT = "US"


# -- the rules -----------------------------------------------------------------------------------

def target_dtype(target: np.dtype | str) -> np.dtype:
    """A numpy dtype from a numpy dtype or an edgeml dtype name ("float32", "string", ...)."""
    return dtypes.to_numpy(target) if isinstance(target, str) else np.dtype(target)


def check_dtype(source: np.dtype, target: np.dtype, name: str, received: str | None = None) -> None:
    """Raise DataError when no value of `source` may feed the `target` input `name`.

    Passing this does not mean every value fits: `cast` still checks ranges and overflow. Object
    arrays are judged element by element in `cast`. `received` names what was given in the
    message (default: "float64 values", "strings").
    """
    why = _plan(source, target)[0]
    if why is not None:
        raise _error(name, target, f"received {received or _describe(source)}{why}")


def cast(array: Any, target: np.dtype | str, name: str) -> np.ndarray:
    """`array` as `target` (a numpy dtype or edgeml dtype name) by the rules above, or DataError."""
    want = target if isinstance(target, np.dtype) else target_dtype(target)
    arr = array if type(array) is np.ndarray else np.asarray(array)
    have = arr.dtype
    if have == want:
        return arr
    if have.kind == "O":
        return _cast_objects(arr, want, name)
    why, step = _plan(have, want)
    if why is not None:
        example = _example_text(arr) if have.kind in _TEXT else None
        raise _error(name, want, f"received {f'strings such as {example!r}' if example is not None else _describe(have)}{why}")
    return step(arr, want, name)


# -- plans: what a (source, target) pair needs, decided once per pair ------------------------------

Step = Callable[[np.ndarray, np.dtype, str], np.ndarray]
_PLANS: dict[tuple[np.dtype, np.dtype], tuple[str | None, Step]] = {}


def _plan(source: np.dtype, target: np.dtype) -> tuple[str | None, Step]:
    key = (_key(source), _key(target))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _make_plan(*key)
    return plan


def _key(dt: np.dtype) -> np.dtype:
    """Text dtypes of every length share one plan (and one cache entry)."""
    return np.dtype(dt.kind) if dt.kind in _TEXT else dt


def _make_plan(source: np.dtype, target: np.dtype) -> tuple[str | None, Step]:
    have, want = source.kind, target.kind
    if have == "O" or source == target or (have == "U" and want == "U"):
        return None, _unchanged
    if want in _TEXT:
        return (None, _decode) if have in _TEXT else (", which are not converted to text", _unchanged)
    if have in _TEXT:
        return ", which are not converted to numbers", _unchanged
    if have not in _NUMERIC:
        return f"; use one of the tensor dtypes ({', '.join(dtypes.BY_NAME)})", _unchanged
    if want == "b":
        return (None, _astype) if have == "b" else ("; a bool input takes only booleans", _unchanged)
    if want in "iu" and have == "f":
        return ", which are not cast to integers (round and cast them first)", _unchanged
    if have == "b" or np.can_cast(source, target, "safe") or \
            (want == "f" and have in "iu" and np.iinfo(source).max <= float(np.finfo(target).max)):
        return None, _astype  # every value fits (large integers may round to the nearest float)
    return None, _to_float(target) if want == "f" else _to_int


def _unchanged(arr: np.ndarray, want: np.dtype, name: str) -> np.ndarray:
    return arr


def _astype(arr: np.ndarray, want: np.dtype, name: str) -> np.ndarray:
    return arr.astype(want)


def _to_int(arr: np.ndarray, want: np.dtype, name: str) -> np.ndarray:
    info = np.iinfo(want)
    outside = arr > info.max
    if arr.dtype.kind == "i":
        outside |= arr < info.min
    if outside.any():
        value = int(arr[outside].flat[0])
        raise _error(name, want, f"value {value} does not fit ({dtypes.from_numpy(want).name} holds {info.min}..{info.max})")
    return arr.astype(want)


def _to_float(target: np.dtype) -> Step:
    """The step for a cast to float `target` that might overflow: finite values never become inf."""
    top = float(np.finfo(target).max)
    bound = top * top

    def step(arr: np.ndarray, want: np.dtype, name: str) -> np.ndarray:
        # Cheap proof that nothing overflows: the sum of squares bounds every |value|. NaN, inf or a
        # large value fails it, and the exact check below decides.
        if arr.dtype.kind == "f" and np.vdot(arr, arr) <= bound:
            return arr.astype(want)
        with np.errstate(over="ignore"):  # an overflow is found and refused below
            out = arr.astype(want)
        overflow = np.isinf(out) & np.isfinite(arr)
        if overflow.any():
            value = arr[overflow].flat[0]
            value = int(value) if arr.dtype.kind in "iu" else float(value)
            raise _error(name, want, f"value {value!r} does not fit ({dtypes.from_numpy(want).name} holds -{top:g}..{top:g})")
        return out

    return step


def _decode(arr: np.ndarray, want: np.dtype, name: str) -> np.ndarray:
    try:
        return np.char.decode(arr, "utf-8") if arr.dtype.kind == "S" else arr
    except UnicodeDecodeError:
        raise _error(name, np.dtype(str), "received bytes that are not UTF-8 text") from None


def _cast_objects(arr: np.ndarray, want: np.dtype, name: str) -> np.ndarray:
    """Object arrays (pandas columns, Python lists with None): judged element by element."""
    flat = arr.reshape(-1).tolist()
    if want.kind in _TEXT:
        bad = next((v for v in flat if not _is_text_or_missing(v)), None)
        if bad is not None:
            raise _error(name, want, f"received {type(bad).__name__} values such as {bad!r}, which are not converted to text")
        try:
            text = [v if isinstance(v, str) else v.decode() if isinstance(v, bytes) else "" for v in flat]
        except UnicodeDecodeError:
            raise _error(name, want, "received bytes that are not UTF-8 text") from None
        return np.array(text, dtype=str).reshape(arr.shape)
    text = next((v for v in flat if isinstance(v, (str, bytes))), None)
    if text is not None:
        raise _error(name, want, f"received strings such as {text!r}, which are not converted to numbers")
    if any(v is None for v in flat):
        raise _error(name, want, "received None (a missing value); use NaN for a missing number")
    values = np.array(flat) if flat else np.empty(0, want)
    if values.dtype.kind not in _NUMERIC:
        bad = next((v for v in flat if not isinstance(v, (bool, int, float, np.generic))), flat[0])
        raise _error(name, want, f"received {type(bad).__name__} values such as {bad!r}; pass numbers")
    return cast(values.reshape(arr.shape), want, name)


def _is_text_or_missing(v: Any) -> bool:
    return v is None or isinstance(v, (str, bytes)) or (isinstance(v, float) and v != v)


def _describe(dt: np.dtype) -> str:
    if dt.kind in _TEXT:
        return "strings"
    return f"{dt.name} values"


def _error(name: str, target: np.dtype, why: str) -> DataError:
    label = "string" if target.kind in _TEXT else dtypes.from_numpy(target).name
    return DataError(f"input {name!r} expects {label}: {why}")


def _example_text(arr: np.ndarray) -> str | None:
    """The first element of a text array that is not a number (what was typed wrong), if any."""
    for v in arr.reshape(-1)[:10000].tolist():
        try:
            float(v)
        except (TypeError, ValueError):
            return v.decode(errors="replace") if isinstance(v, bytes) else v
    return None


# -- fixed-batch chunking ------------------------------------------------------------------------

def fixed_batch(specs: Sequence[TensorSpec]) -> int | None:
    """The batch size fixed by the inputs' axis 0 (the smallest if they differ), None when all are dynamic."""
    fixed = {s.shape[0] for s in specs if s.shape and s.shape[0] is not None}
    return min(fixed) if fixed else None


def run_in_chunks(run: Callable[[Feeds], Feeds], feeds: Feeds, step: int, pad: bool) -> Feeds:
    """Call `run` on at most `step` samples at a time and concatenate its outputs.

    With `pad` (fixed-batch models), a short last chunk is filled up to `step` by repeating its last
    sample, and the padding is cut off the outputs again.
    """
    n = len(next(iter(feeds.values())))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, step):
        chunk = {k: v[start:start + step] for k, v in feeds.items()}
        real = min(step, n - start)
        if pad and real < step:
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], step - real, axis=0)]) for k, v in chunk.items()}
        for name, value in run(chunk).items():
            parts.setdefault(name, []).append(np.asarray(value)[:real])
    return {k: np.concatenate(v) for k, v in parts.items()}
