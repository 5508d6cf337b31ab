"""`edgeml train` run directories: the saved model plus what convert needs beside it.

A directory holding `edgeml-run.json` is a run. Its model (model.joblib or model.pt2) is loaded by
the scikit-learn or PyTorch loader; the run's calibration and validation samples become the default
--calibration/--validation, its label column the default --target, and its training metrics go
into the bundle manifest. Options given on the command line win.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeml.errors import SourceError
from edgeml.messages import RUN_MANIFEST_NAME as RUN_MANIFEST
from edgeml.messages import RunManifest
from edgeml.protocol import ProtocolError
from edgeml.schema import TensorSpec

from ..options import ConvertOptions, Task
from .base import SourceModel

DELEGATES = {"sklearn": "edgeml.convert.sources.sklearn", "torch": "edgeml.convert.sources.pytorch"}


class RunDirLoader:
    name = "run"
    description = "an `edgeml train` run directory (holds edgeml-run.json; its model, samples and metrics are used)"

    def matches(self, source: str) -> bool:
        return (Path(source) / RUN_MANIFEST).is_file()

    def load(self, source: str, options: ConvertOptions) -> SourceModel:
        import importlib

        run_dir = Path(source)
        run = read_run(run_dir)
        module = DELEGATES.get(run.framework)
        if module is None:
            raise SourceError(f"{run_dir / RUN_MANIFEST}: unknown framework {run.framework!r} (expected {', '.join(DELEGATES)})")
        model_path = run_dir / run.model_file
        delegated = dataclasses.replace(
            options, source=str(model_path),
            inputs=options.inputs or [TensorSpec(i.name, i.dtype, list(i.shape)) for i in run.inputs],
            labels=options.labels or (None if run.labels is None else list(run.labels)),
            task=options.task or (Task(run.task) if run.task in {t.value for t in Task} else None),
        )
        model = importlib.import_module(module).LOADER.load(str(model_path), delegated)
        model.default_calibration = _file(run_dir, run.calibration)
        model.default_validation = _file(run_dir, run.validation)
        model.default_target = run.label_column
        model.metrics = dict(run.metrics)
        model.details["train_run"] = run.run_id
        return model


def read_run(run_dir: Path) -> RunManifest:
    path = Path(run_dir) / RUN_MANIFEST
    try:
        return RunManifest.read(run_dir)
    except OSError as exc:
        raise SourceError(f"{path} is not a readable run manifest: {exc}") from None
    except ProtocolError as exc:
        if exc.reason in ("not_json", "oversized"):
            raise SourceError(f"{path} is not a readable run manifest: {exc}") from None
        raise SourceError(f"{path} is not an edgeml train run manifest: {exc.detail}") from None


def run_defaults(source: str) -> tuple[str, str] | None:
    """(name, version) for a run directory SOURCE: the run's name and its run id; None for other sources."""
    if not (Path(source) / RUN_MANIFEST).is_file():
        return None
    run = read_run(Path(source))
    return run.name or run.model_name or "model", run.run_id


def _file(run_dir: Path, name: str | None) -> Path | None:
    return run_dir / name if name and (run_dir / name).is_file() else None


LOADER = RunDirLoader()
