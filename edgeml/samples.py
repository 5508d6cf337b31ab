"""A bundle's golden samples (samples.npz): inputs and the source model's outputs on them.

    input/NAME    one array per model input, rows along the first axis
    output/NAME   one array per source output, the same rows

Written by `edgeml convert`; read by the device smoke test, the simulator, `edgeml predict --input`
and the tests. Arrays never hold Python objects (strings are stored as numpy unicode).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Mapping

import numpy as np

from .atomic import atomic_open
from .errors import BundleError

INPUT_PREFIX = "input/"
OUTPUT_PREFIX = "output/"

Arrays = dict[str, np.ndarray]

# CPython 3.11 before 3.11.9 raises "SystemError: AST constructor recursion depth mismatch" when
# ast.literal_eval (which numpy uses for every .npy header) runs in two threads at once (gh-106905).
# A device reads samples in its installer and shadow threads, so every .npz read goes through one lock.
_NPZ_LOCK = threading.Lock()


def load_npz(path: str | Path) -> Arrays:
    """Every array of an .npz file (no pickles); OSError/ValueError when it cannot be read."""
    with _NPZ_LOCK, np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _storable(value: object) -> np.ndarray:
    arr = np.asarray(value)
    return arr.astype(str) if arr.dtype.kind == "O" else arr


def write_samples(path: str | Path, inputs: Mapping[str, object], outputs: Mapping[str, object]) -> None:
    """Write (atomically) the golden inputs and reference outputs."""
    arrays = {f"{INPUT_PREFIX}{k}": _storable(v) for k, v in inputs.items()}
    arrays.update({f"{OUTPUT_PREFIX}{k}": _storable(v) for k, v in outputs.items()})
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def split_samples(arrays: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
    """(inputs, outputs) by name from the keys of a samples file."""
    inputs = {k[len(INPUT_PREFIX):]: v for k, v in arrays.items() if k.startswith(INPUT_PREFIX)}
    outputs = {k[len(OUTPUT_PREFIX):]: v for k, v in arrays.items() if k.startswith(OUTPUT_PREFIX)}
    return inputs, outputs


def sample_inputs(arrays: Mapping[str, np.ndarray]) -> Arrays:
    """The inputs of an .npz of arrays: its `input/NAME` arrays when it is a samples file, else all of them."""
    inputs, _ = split_samples(arrays)
    return inputs if inputs else dict(arrays)


def read_samples(path: str | Path) -> tuple[Arrays, Arrays]:
    """(inputs, outputs) of a samples.npz; BundleError when it cannot be read."""
    try:
        arrays = load_npz(path)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} is not a readable samples file ({exc}); rebuild the bundle with `edgeml convert`") from None
    return split_samples(arrays)
