"""MLflow model URIs as convert sources: `models:/NAME/VERSION` (registry) and `runs:/RUN_ID/model`.

The URI is resolved against $MLFLOW_TRACKING_URI (MLflow's own variable: the URI given to
`edgeml train --mlflow`). A model logged by `edgeml train` is converted from the run directory that
run logged under `edgeml-run/` (same model file, samples, labels and training metrics as
`edgeml convert RUN_DIR`); another scikit-learn model in the registry is converted from its pickled
model (trusted registries only, as for any pickle). The bundle manifest's `lineage` records the
URI, the MLflow run id, the edgeml train run id and the training data's sha256.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeml.errors import SourceError, UnsupportedModelError

from ..options import ConvertOptions
from .base import SourceModel

SCHEMES = ("models:/", "runs:/")
RUN_ARTIFACTS = "edgeml-run"  # where `edgeml train --mlflow` logs the run directory (train.tracking)


class MlflowLoader:
    name = "mlflow"
    description = "an MLflow model URI (models:/NAME/VERSION or runs:/RUN_ID/model), resolved against $MLFLOW_TRACKING_URI"

    def matches(self, source: str) -> bool:
        return source.startswith(SCHEMES)

    def load(self, source: str, options: ConvertOptions) -> SourceModel:
        from edgeml.mlflow_store import connect, tracking_errors

        mlflow = connect(None)
        uri = mlflow.get_tracking_uri()
        root = _scratch()
        with tracking_errors(uri, f"downloading {source}"):
            model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(root / "model")))
        with tracking_errors(uri, f"reading {source}"):
            mlmodel = mlflow.models.Model.load(str(model_dir))
        run_id = mlmodel.run_id
        run_dir = _run_dir(mlflow, uri, run_id, root) if run_id else None
        if run_dir is not None:
            from .run_dir import LOADER as RUN_LOADER

            model = RUN_LOADER.load(str(run_dir), options)
        else:
            model = _flavour_model(mlmodel, model_dir, source, options)
        model.lineage = {"source_uri": source, "tracking_uri": uri, "mlflow_run_id": run_id,
                         "train_run_id": model.metrics.get("run_id"), "data_sha256": model.metrics.get("data_sha256")}
        return model


def registry_defaults(source: str) -> tuple[str, str] | None:
    """(name, version) for `models:/NAME/VERSION`; None for other sources."""
    if not source.startswith("models:/"):
        return None
    parts = source[len("models:/"):].split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def _scratch() -> Path:
    """A temp directory that lives until the process exits (the pipeline reads the samples after load)."""
    root = Path(tempfile.mkdtemp(prefix="edgeml-mlflow-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def _run_dir(mlflow: Any, uri: str, run_id: str, root: Path) -> Path | None:
    from edgeml.mlflow_store import tracking_errors

    with tracking_errors(uri, f"listing the artifacts of run {run_id}"):
        names = {Path(a.path).name for a in mlflow.artifacts.list_artifacts(run_id=run_id)}
    if RUN_ARTIFACTS not in names:
        return None
    with tracking_errors(uri, f"downloading the run directory of run {run_id}"):
        path = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=RUN_ARTIFACTS, dst_path=str(root / "run")))
    return path


def _flavour_model(mlmodel: Any, model_dir: Path, source: str, options: ConvertOptions) -> SourceModel:
    import dataclasses

    sk = mlmodel.flavors.get("sklearn")
    if not sk:
        have = ", ".join(sorted(mlmodel.flavors)) or "none"
        raise UnsupportedModelError(f"{source} was not logged by `edgeml train` and has no scikit-learn flavour (flavours: {have}); "
                                    "convert models logged by `edgeml train --mlflow`, or export the model to ONNX")
    if sk.get("serialization_format") not in ("pickle", "cloudpickle"):
        raise UnsupportedModelError(f"{source}: scikit-learn models serialised as {sk.get('serialization_format')!r} "
                                    "are not supported (log with serialization_format='cloudpickle')")
    path = model_dir / sk.get("pickled_model", "model.pkl")
    if not path.is_file():
        raise SourceError(f"{source}: the model file {path.name} is missing from the downloaded artifacts")
    from .sklearn import LOADER as SKLEARN_LOADER

    return SKLEARN_LOADER.load(str(path), dataclasses.replace(options, source=str(path)))


LOADER = MlflowLoader()
