"""Where a model came from: the data hash recorded in metrics.json, the MLflow run and the bundle manifest.

The hash is sha256 of the data file's bytes for --data (so `sha256sum FILE` reproduces it), and of
pandas' per-row hashes of the loaded frame for a bundled --dataset (stable for a given
scikit-learn release of that dataset).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def data_sha256(data: Path | None, frame: Any) -> str:
    h = hashlib.sha256()
    if data is not None:
        with open(data, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        return h.hexdigest()
    import pandas as pd

    h.update(",".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()
