"""`edgeml train --from-fleet MODEL[@VERSION]`: retrain from rows captured on devices plus the original data.

Decisions (user-visible):
- The run being replaced is `--run-dir OLD_RUN`: bundle manifests record the train run id
  (`manifest.metrics.run_id`), not where the run directory lives. When the fleet knows MODEL@VERSION, its
  run id must match the run directory's, so a wrong directory fails before training.
- Labels: a captured row carrying feedback labels (`labels`, one per sample) uses them. Rows without
  feedback are refused unless `--pseudo-label` is given; then they are labelled with the old run's model
  (what the deployed model predicted, up to conversion). Pseudo-labels teach the model nothing the old one
  did not know; they only adapt it to the fleet's input distribution, and the old model scores 1.0 on
  them by construction (the comparison says so).
- The dataset is the original test split first (kept as the test split, `holdout_rows` of the new
  recipe), then the original training split and the captured rows. It is written beside the new run as
  OUT.data.csv, which the new run's recipe points to, so the new run can be retrained from in turn.
- Only scikit-learn runs (tabular data) are retrained from the fleet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import DataError, OutputExistsError, UsageError
from edgeml.messages import RunManifest

from .fleet_source import FleetSource, bundle_run_id, fetch_rows
from .recipe import options_from

DATA_SUFFIX = ".data.csv"


def captured_frame(rows: list[dict[str, Any]], features: list[str]) -> tuple[Any, list[Any] | None]:
    """Captured samples as a frame of the run's feature columns and their feedback labels (None unless every
    row has them). Columns come from the inputs' `features` names (one tensor per column, or one matrix);
    columns a device did not send (sensitive ones) are NaN, imputed by the pipeline like missing values."""
    import pandas as pd

    records, labels = [], []
    for row in rows:
        columns = _columns(row.get("inputs") or {}, features)
        if not columns:
            continue
        n = min(len(v) for v in columns.values())
        records += [{c: v[i] for c, v in columns.items()} for i in range(n)]
        given = row.get("labels")
        labels += list(given) if isinstance(given, list) and len(given) == n else [None] * n
    frame = pd.DataFrame.from_records(records, columns=features).astype(np.float64)
    return frame, (None if not labels or any(v is None for v in labels) else labels)


def _columns(inputs: dict[str, Any], features: list[str]) -> dict[str, list[float]]:
    """feature name -> values of one captured request (only numeric tensors whose columns the run knows)."""
    out: dict[str, list[float]] = {}
    for tensor in inputs.values():
        shape, names = tensor.get("shape") or [], tensor.get("features")
        if tensor.get("dtype") == "str" or len(shape) != 2:
            continue
        if names is None and shape[-1] == len(features):
            names = features
        if not names or shape[-1] != len(names):
            continue
        data = np.asarray(tensor["data"], dtype=np.float64).reshape(shape)
        out.update({c: data[:, i].tolist() for i, c in enumerate(names) if c in features})
    return out


@dataclass
class FleetRetrain:
    """What `retrain` did: the new run, its data file and the comparison with the old run."""

    out: Path
    data: Path
    fleet_rows: int
    label_source: str  # "feedback" or "pseudo"
    comparison: dict[str, Any]
    summary: dict[str, Any]


def retrain(source: FleetSource, run_dir: Path, out: Path, pseudo_label: bool = False, force: bool = False,
            n_jobs: int = -1, reporter: Any = None) -> FleetRetrain:
    import joblib
    import pandas as pd

    from . import data as data_mod
    from .compare_runs import compare_runs
    from .training import _resolve_task, _split
    from .training import train as run_train

    old = _read_run(run_dir)
    expected = bundle_run_id(source)
    if expected is not None and expected != old.run_id:
        raise UsageError(f"{source.model}@{source.version} was trained by run {expected}, but {run_dir} is run "
                         f"{old.run_id}: pass the --run-dir of that run")
    data_file = out.with_name(out.name + DATA_SUFFIX)
    for path in (out, data_file):
        if path.exists() and not force:
            raise OutputExistsError(f"{path} already exists; pass --force to replace it or choose another --out")
    old_options = options_from(old.recipe, out, n_jobs=n_jobs)
    table = data_mod.load(old_options)
    task = _resolve_task(table, old_options)
    X_train, X_test, y_train, y_test = _split(table, task, old_options)  # the old run's split (same seed)
    features = [str(c) for c in table.frame.columns]
    rows = fetch_rows(source)
    fleet_X, labels = captured_frame(rows, features)
    if fleet_X.empty:
        raise DataError(f"the fleet has no captured rows of {source.model}{'@' + source.version if source.version else ''}"
                        " in that period (is capture on? `edgeml fleet assign … --capture RATE`)")
    old_model = joblib.load(Path(run_dir) / old.model_file)
    if labels is not None:
        fleet_y, label_source = np.asarray(labels), "feedback"
    elif pseudo_label:
        fleet_y, label_source = np.asarray(old_model.predict(fleet_X)), "pseudo"
    else:
        raise UsageError(f"{len(fleet_X)} captured samples carry no feedback labels: pass --pseudo-label to label "
                         "them with the old model's predictions (it adapts to the fleet's inputs, it cannot correct "
                         "the old model's mistakes)")
    target = old.recipe["target"]
    parts = [X_test.assign(**{target: y_test}), X_train.assign(**{target: y_train}), fleet_X.assign(**{target: fleet_y})]
    tmp = data_file.with_name(data_file.name + ".tmp")
    pd.concat(parts, ignore_index=True).to_csv(tmp, index=False)
    tmp.replace(data_file)
    try:
        options = options_from(old.recipe, out, data=data_file.resolve(), dataset=None, target=target,
                               holdout_rows=len(X_test), force=force, n_jobs=n_jobs)
        result = run_train(options, reporter)
    except BaseException:
        data_file.unlink(missing_ok=True)  # nothing half-made is left behind
        raise
    new_model = joblib.load(out / "model.joblib")
    comparison = compare_runs(old_model, new_model, task.value, {"original_test": (X_test, y_test),
                                                                 "fleet": (fleet_X, fleet_y)})
    comparison.update(old_run=old.run_id, new_run=result.summary["run_id"], fleet_rows=len(rows),
                      fleet_samples=len(fleet_X), label_source=label_source,
                      note="pseudo-labels come from the old model: it scores 1.0 on them by construction"
                      if label_source == "pseudo" else None)
    tmp = out / "comparison.json.tmp"
    tmp.write_text(json.dumps(comparison, indent=2, default=str) + "\n")
    tmp.replace(out / "comparison.json")
    return FleetRetrain(out, data_file, len(rows), label_source, comparison, result.summary)


def _read_run(run_dir: Path) -> RunManifest:
    from edgeml.protocol import ProtocolError

    try:
        run = RunManifest.read(run_dir)
    except OSError:
        raise UsageError(f"--run-dir {run_dir}: not an `edgeml train` run directory (no edgeml-run.json)") from None
    except ProtocolError as exc:
        raise UsageError(f"--run-dir {run_dir}: {exc.detail}") from None
    if not run.recipe:
        raise UsageError(f"--run-dir {run_dir}: the run records no recipe (trained by an older edgeml); train it again")
    if run.framework != "sklearn":
        raise UsageError(f"--run-dir {run_dir}: --from-fleet retrains scikit-learn runs (this one is {run.framework})")
    if not run.recipe.get("target"):
        raise UsageError(f"--run-dir {run_dir}: the run has no target column to retrain")
    return run

