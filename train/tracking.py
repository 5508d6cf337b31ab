"""`--mlflow URI`: log the run's parameters, metrics and files to MLflow (imported only then)."""

from __future__ import annotations

from typing import Any

from edgeml.errors import require

from .options import TrainOptions


def log_run(options: TrainOptions, result: Any) -> None:
    mlflow = require("mlflow", "mlflow")
    summary = result.summary
    mlflow.set_tracking_uri(options.mlflow)
    mlflow.set_experiment("edgeml-train")
    with mlflow.start_run(run_name=f"{summary['name']}-{summary['run_id']}"):
        mlflow.log_params(_params(options, summary))
        metrics = {f"test_{k}": v for k, v in summary["evaluation"]["metrics"].items() if isinstance(v, (int, float))}
        if summary["search"]["cv_score"] is not None:
            metrics["cv_" + summary["search"]["scoring"]] = summary["search"]["cv_score"]
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(result.out))


def _params(options: TrainOptions, summary: dict[str, Any]) -> dict[str, Any]:
    params = {"model": options.model, "task": summary["task"], "search": options.search.value, "trials": options.trials,
              "cv": options.cv, "test_size": options.test_size, "seed": options.seed,
              "data": str(options.data or options.dataset), "target": options.target}
    params.update({f"best.{k}": v for k, v in summary["search"]["best_params"].items()})
    return params
