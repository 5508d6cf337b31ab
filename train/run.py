"""The run directory: everything `edgeml convert RUN_DIR` and a person need, written atomically.

    RUN_DIR/
      edgeml-run.json        what is where (the file `edgeml convert` recognises a run by)
      model.joblib | model.pt2
      metrics.json           data counts (and data sha256), search, test metrics, importance, bias, robustness
      report.html            the same with plots, self-contained
      reference.json         per-feature histograms on fixed bins and the prediction histogram (training split)
      calibration.csv|npz    a sample of the training split
      validation.csv|npz     a sample of the held-out test split, with labels

The directory is built in a hidden temp sibling and renamed into place at the end, so a failure
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeml.atomic import swap_dir
from edgeml.errors import OutputExistsError
from edgeml.messages import RunManifest
from edgeml.messages import RUN_MANIFEST_NAME as RUN_MANIFEST  # the contract defines the file name
SAMPLE_ROWS = 1000


def check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise OutputExistsError(f"{out} already exists; pass --force to replace it or choose another --out")


@contextmanager
def atomic_dir(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temp directory next to `out`; rename it to `out` when the block succeeds."""
    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a run directory is an ordinary directory
    try:
        yield tmp
        swap_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Samples:
    """Calibration (training split) and validation (test split) rows in the form the model takes."""

    calibration: Any
    validation: Any
    calibration_labels: Any  # None for clustering
    validation_labels: Any


def label_column(features: list[str]) -> str:
    return "label" if "label" not in features else "edgeml_label"


def write_table_samples(root: Path, samples: Samples, features: list[str]) -> dict[str, str]:
    """CSV files of raw columns (+ the label column) for scikit-learn pipelines."""
    label = label_column(features)
    cal, val = samples.calibration.iloc[:SAMPLE_ROWS].copy(), samples.validation.iloc[:SAMPLE_ROWS].copy()
    if samples.validation_labels is not None:
        cal[label] = np.asarray(samples.calibration_labels)[:SAMPLE_ROWS]
        val[label] = np.asarray(samples.validation_labels)[:SAMPLE_ROWS]
    cal.to_csv(root / "calibration.csv", index=False)
    val.to_csv(root / "validation.csv", index=False)
    return {"calibration": "calibration.csv", "validation": "validation.csv",
            "label_column": label if samples.validation_labels is not None else None}


def write_tensor_samples(root: Path, samples: Samples, input_name: str, shape: tuple[int, ...], classes: list[Any] | None) -> dict[str, str]:
    """.npz files keyed by the model's input name (+ "label": class index or target value) for torch models."""
    cal = np.asarray(samples.calibration, dtype=np.float32)[:SAMPLE_ROWS].reshape(-1, *shape)
    val = np.asarray(samples.validation, dtype=np.float32)[:SAMPLE_ROWS].reshape(-1, *shape)
    cal_arrays, val_arrays = {input_name: cal}, {input_name: val}
    if samples.validation_labels is not None:
        cal_arrays["label"] = _label_values(samples.calibration_labels, classes)
        val_arrays["label"] = _label_values(samples.validation_labels, classes)
    np.savez(root / "calibration.npz", **cal_arrays)
    np.savez(root / "validation.npz", **val_arrays)
    return {"calibration": "calibration.npz", "validation": "validation.npz",
            "label_column": "label" if samples.validation_labels is not None else None}


def _label_values(y: Any, classes: list[Any] | None) -> np.ndarray:
    """Class index (what the exported probabilities' argmax gives) or the regression target."""
    y = np.asarray(y)[:SAMPLE_ROWS]
    return np.searchsorted(np.asarray(classes), y) if classes is not None else y.astype(np.float32)


def reference_statistics(frame: Any, predictions: np.ndarray, image: bool, classify: bool) -> dict[str, Any]:
    """Histograms with convert's binning (so the bundle's and the run's statistics read the same)."""
    from edgeml.histograms import categorical_histogram, numeric_histogram

    from .data import _is_numeric

    if image:  # one histogram over all pixel values, as convert does for image tensors
        features = [{"feature": "input", "index": None, **numeric_histogram(frame.to_numpy(dtype=np.float64))}]
    else:
        features = [{"feature": c, "index": i, **(numeric_histogram(frame[c].to_numpy(dtype=np.float64)) if _is_numeric(frame[c])
                                                 else categorical_histogram(frame[c].to_numpy()))}
                    for i, c in enumerate(frame.columns)]
    prediction = categorical_histogram(predictions) if classify else numeric_histogram(predictions)
    return {"data": "training split", "samples": int(len(frame)), "features": features, "prediction": prediction}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def write_run_manifest(root: Path, run: RunManifest) -> None:
    write_json(root / RUN_MANIFEST, run.to_dict())


def read_run_manifest(run_dir: Path) -> RunManifest:
    """The run's typed manifest (OSError when unreadable, ProtocolError when malformed)."""
    return RunManifest.read(run_dir)
