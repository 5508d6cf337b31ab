"""`--mlflow URI [--register NAME]`: log the run to MLflow (imported only then).

One MLflow run per `edgeml train` run, in the experiment "edgeml-train":
- params: the options and the best hyperparameters; metrics: test metrics, the CV score and the
  robustness figures; tags: edgeml.run_id, edgeml.data_sha256, edgeml.model;
- artifacts: the whole run directory under `edgeml-run/` (what `edgeml convert models:/…` converts);
- the model in its MLflow flavour under `model/` (scikit-learn pipeline, or the PyTorch module), so
  `mlflow.pyfunc.load_model("runs:/RUN_ID/model")` works; loading needs edgeml installed (the
  pipelines hold edgeml's preprocessing classes, the modules edgeml's nets);
- `--register NAME` registers that model as a new version of NAME.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeml.mlflow_store import check, connect, tracking_errors

from .options import TrainOptions

EXPERIMENT = "edgeml-train"
RUN_ARTIFACTS = "edgeml-run"  # artifact folder holding the run directory
MODEL_ARTIFACT = "model"


@dataclass
class LoggedRun:
    run_id: str
    model_uri: str  # runs:/RUN_ID/model
    registered: str | None = None  # models:/NAME/VERSION when --register

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "model_uri": self.model_uri, "registered": self.registered}


def check_tracking(options: TrainOptions) -> None:
    """Called before training: the URI must answer (and hold a registry when --register)."""
    if options.mlflow:
        check(options.mlflow, registry=bool(options.register))


def _ensure_experiment(mlflow: Any, uri: str) -> None:
    """Select the edgeml experiment, creating it first. A database store (sqlite:///mlflow.db) would put
    artifacts in ./mlruns of whatever the current directory is: keep them beside the database instead."""
    from urllib.parse import urlparse

    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        parsed = urlparse(uri)
        location = None
        if parsed.scheme == "sqlite" and parsed.path not in ("", "/", "/:memory:"):
            db = Path(parsed.path[1:])  # sqlite:///rel.db -> "rel.db"; sqlite:////abs.db -> "/abs.db"
            location = (db.expanduser().absolute().parent / "mlartifacts").as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT)


def log_run(options: TrainOptions, result: Any, model: Any, example: Any) -> LoggedRun:
    """Log `result` (a TrainResult whose run directory exists) and the fitted `model`."""
    uri = options.mlflow or ""
    mlflow = connect(uri)
    summary = result.summary
    # MLflow writes "View run … at" to stdout: keep stdout for our own output (--json)
    with tracking_errors(uri, "logging the run"), warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        logging.getLogger("mlflow").setLevel(logging.ERROR)
        _ensure_experiment(mlflow, uri)
        with mlflow.start_run(run_name=f"{summary['name']}-{summary['run_id']}") as run:
            mlflow.log_params(_params(options, summary))
            mlflow.log_metrics(_metrics(summary))
            mlflow.set_tags({"edgeml.run_id": summary["run_id"], "edgeml.model": summary["model"],
                             "edgeml.data_sha256": summary["data"].get("sha256") or ""})
            mlflow.log_artifacts(str(result.out), artifact_path=RUN_ARTIFACTS)
            info = FLAVOURS[summary["framework"]](mlflow, model, example, options.register)
        version = getattr(info, "registered_model_version", None)
    registered = f"models:/{options.register}/{version}" if options.register and version is not None else None
    return LoggedRun(run.info.run_id, f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}", registered)


def _log_sklearn(mlflow: Any, model: Any, example: Any, register: str | None) -> Any:
    import mlflow.sklearn
    import sklearn

    # The signature says float64 for numeric columns (training holds them as float32): pyfunc then takes
    # what pandas reads from a CSV, and widening float32 input is safe too.
    example = example.astype({c: "float64" for c in example.columns if str(example[c].dtype) == "float32"})
    # cloudpickle, not MLflow's default skops: skops refuses edgeml's preprocessing classes unless each is trusted
    return mlflow.sklearn.log_model(model, name=MODEL_ARTIFACT, registered_model_name=register, input_example=example,
                                    serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                                    pip_requirements=[f"scikit-learn=={sklearn.__version__}", "cloudpickle", "edgeml"])


def _log_torch(mlflow: Any, model: Any, example: Any, register: str | None) -> Any:
    import mlflow.pytorch
    import torch

    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    return mlflow.pytorch.log_model(estimator.module_, name=MODEL_ARTIFACT, registered_model_name=register,
                                    input_example=example.reshape(len(example), *estimator.input_shape),
                                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "edgeml"])


# run framework -> how its model is logged
FLAVOURS: dict[str, Callable[[Any, Any, Any, str | None], Any]] = {"sklearn": _log_sklearn, "torch": _log_torch}


def _params(options: TrainOptions, summary: dict[str, Any]) -> dict[str, Any]:
    params = {"model": options.model, "task": summary["task"], "search": options.search.value, "trials": options.trials,
              "cv": options.cv, "test_size": options.test_size, "seed": options.seed, "explain": options.explain.value,
              "data": str(options.data or options.dataset), "target": options.target}
    params.update({f"best.{k}": v for k, v in summary["search"]["best_params"].items()})
    return params


def _metrics(summary: dict[str, Any]) -> dict[str, float]:
    metrics = {f"test_{k}": v for k, v in summary["evaluation"]["metrics"].items() if isinstance(v, (int, float))}
    if summary["search"]["cv_score"] is not None:
        metrics["cv_" + summary["search"]["scoring"]] = summary["search"]["cv_score"]
    rob = summary.get("robustness")
    if rob:
        metrics.update({f"robustness_noise_{r['strength']}": r["value"] for r in rob["noise"]})
        metrics.update({f"robustness_fgsm_{r['epsilon']}": r["value"] for r in rob["fgsm"] or []})
    return metrics
