"""`edgeml train` end to end: data -> split -> pipeline -> search -> evaluation -> bias -> run directory."""

from __future__ import annotations

import secrets
import shlex
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import DataError, UsageError, require
from edgeml.messages import RunInput, RunManifest

from . import data as data_mod
from .bias import BiasReport, bias_report, check_sensitive
from .evaluate import Evaluation, evaluate
from .models import MODELS, ModelSpec, get_model
from .options import ExplainKind, TaskKind, TrainOptions
from .preprocessing import ColumnPlan, build_preprocessor, plan_columns
from .progress import Reporter
from .recipe import recipe_of
from .robustness import robustness_report
from .run import (Samples, atomic_dir, check_out, reference_statistics, write_json, write_run_manifest,
                  write_table_samples, write_tensor_samples)
from .search import SearchResult, run_search
from .space import prefixed

TORCH_INPUT = "input"  # forward() argument of the exported torch modules


@dataclass
class TrainResult:
    out: Path
    summary: dict[str, Any]  # the content of metrics.json
    convert_command: str
    mlflow: Any = None  # tracking.LoggedRun when --mlflow


def train(options: TrainOptions, reporter: Reporter | None = None) -> TrainResult:
    reporter = reporter or Reporter(quiet=True)
    _check_options(options)
    reporter.step("loading data")
    table = data_mod.load(options)
    task = _resolve_task(table, options)
    spec = get_model(options.model, task)
    if spec.images_only and table.image_shape is None:
        raise UsageError(f"model {spec.name} needs image data (e.g. --dataset digits); for tabular data use mlp or a scikit-learn model")
    if options.sensitive is not None:
        check_sensitive(table.frame[options.sensitive], options.sensitive, task)
    X_train, X_test, y_train, y_test = _split(table, task, options)
    pipeline, space, plan = _pipeline(spec, task, table, options)
    search = run_search(pipeline, space, _model_input(spec, X_train), y_train, task, options, reporter)
    reporter.step("evaluating on the test split")
    model = search.estimator
    ev = evaluate(model, _model_input(spec, X_test), y_test, task, options.n_jobs, options.seed, options.explain)
    robustness = None
    if options.robustness:
        reporter.step("checking robustness to input perturbations")
        robustness = robustness_report(model, _model_input(spec, X_train), _model_input(spec, X_test), y_test, task,
                                       spec.framework, options.seed)
    bias = None
    if options.sensitive is not None:
        bias = bias_report(y_test, model.predict(_model_input(spec, X_test)), X_test[options.sensitive], task,
                           list(getattr(model, "classes_", [])) or None, options)
    summary = _summary(options, task, spec, table, plan, search, ev, bias, len(X_train), len(X_test))
    summary["robustness"] = robustness.to_dict() if robustness else None
    reporter.step(f"writing {options.out}")
    _write(options, spec, task, model, summary, X_train, X_test, y_train, y_test, table)
    result = TrainResult(options.out, summary, convert_command(options.out, spec))
    if options.mlflow:
        from .tracking import log_run

        from edgeml.mlflow_store import TrackingError

        reporter.step(f"logging the run to MLflow at {options.mlflow}")
        try:
            result.mlflow = log_run(options, result, model, _model_input(spec, X_test.iloc[:5]))
        except TrackingError as exc:  # the training is not lost: say where it is
            raise TrackingError(f"{exc.message} (the run directory {options.out} is complete and kept)") from None
    return result


def _check_options(options: TrainOptions) -> None:
    if options.model not in MODELS:
        raise UsageError(f"unknown model {options.model!r}; choose from {', '.join(MODELS)}")
    if options.dataset is not None and options.dataset not in data_mod.DATASETS:
        raise UsageError(f"unknown dataset {options.dataset!r}; choose from {', '.join(data_mod.DATASETS)}")
    if not 0.0 < options.test_size < 1.0:
        raise UsageError(f"--test-size {options.test_size}: give a fraction between 0 and 1, e.g. 0.2")
    if options.trials < 1:
        raise UsageError(f"--trials {options.trials}: give at least 1")
    if options.register and not options.mlflow:
        raise UsageError("--register NAME needs --mlflow URI (the tracking server or store holding the registry)")
    if options.explain == ExplainKind.SHAP:
        require("shap", "explain")  # fail before training, naming the extra
    check_out(options.out, options.force)
    if options.mlflow:
        from .tracking import check_tracking

        check_tracking(options)  # a wrong URI or an unreachable server fails now, not after the training


def _resolve_task(table: data_mod.TableData, options: TrainOptions) -> TaskKind:
    from .targets import resolve_task

    if options.task == TaskKind.CLUSTERING:
        table.target = None  # clustering learns from the features only
    task = resolve_task(table.target, options.task, options.target or (data_mod.BUNDLED_TARGET if options.dataset else None))
    if task != TaskKind.CLUSTERING and table.target is None:
        raise UsageError("pass --target COLUMN (the column to predict), or --task clustering")
    return task


def _split(table: data_mod.TableData, task: TaskKind, options: TrainOptions):
    from sklearn.model_selection import train_test_split

    y = None if table.target is None else table.target.to_numpy()
    if options.holdout_rows:  # --from-fleet: the original test set leads the data file, kept as the test split
        n, X = options.holdout_rows, table.frame
        return X.iloc[n:], X.iloc[:n], None if y is None else y[n:], None if y is None else y[:n]
    stratify = y if task == TaskKind.CLASSIFICATION else None
    n_test = int(np.ceil(len(table.frame) * options.test_size))
    if stratify is not None and n_test < len(np.unique(y.astype(str))):
        raise DataError(f"the test split ({n_test} rows) is smaller than the number of classes; raise --test-size or add data")
    try:
        if y is None:
            X_train, X_test = train_test_split(table.frame, test_size=options.test_size, random_state=options.seed)
            return X_train, X_test, None, None
        return train_test_split(table.frame, y, test_size=options.test_size, random_state=options.seed, stratify=stratify)
    except ValueError as exc:  # e.g. a class with a single member cannot be stratified
        raise DataError(f"cannot split the data into train and test: {exc}") from None


def _pipeline(spec: ModelSpec, task: TaskKind, table: data_mod.TableData, options: TrainOptions):
    from sklearn.pipeline import Pipeline

    estimator = spec.build(task, options)
    if spec.framework == "torch":
        plan = plan_columns(table.frame)
        strings = plan.categorical + plan.text
        if strings:
            raise UsageError(f"model {spec.name} takes numeric data; column(s) {', '.join(strings)} hold strings "
                             "(use a scikit-learn model, which one-hot encodes them inside the exported graph)")
        estimator.set_params(image_shape=table.image_shape)
        return Pipeline([("model", estimator)]), prefixed(spec.space, "model__"), plan
    plan = plan_columns(table.frame)
    return Pipeline([("pre", build_preprocessor(plan)), ("model", estimator)]), prefixed(spec.space, "model__"), plan


def _model_input(spec: ModelSpec, X: Any) -> Any:
    """torch models take a float32 matrix; scikit-learn pipelines take the raw frame."""
    return data_mod.to_matrix(X) if spec.framework == "torch" else X


def _summary(options: TrainOptions, task: TaskKind, spec: ModelSpec, table: data_mod.TableData, plan: ColumnPlan,
             search: SearchResult, ev: Evaluation, bias: BiasReport | None, n_train: int, n_test: int) -> dict[str, Any]:
    return {
        "run_id": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2),
        "name": options.run_name, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": task.value, "model": spec.name, "framework": spec.framework, "seed": options.seed,
        "data": {**table.summary(), "train_rows": n_train, "test_rows": n_test, "columns_by_kind": plan.describe()},
        "search": search.to_dict(),
        "evaluation": {"metrics": ev.metrics, "confusion": ev.confusion, "roc": ev.roc,
                       "importance": ev.importance, "importance_method": ev.importance_method},
        "bias": bias.to_dict() if bias else None,
    }


def _write(options: TrainOptions, spec: ModelSpec, task: TaskKind, model: Any, summary: dict[str, Any],
           X_train: Any, X_test: Any, y_train: Any, y_test: Any, table: data_mod.TableData) -> None:
    from .report import render

    features = [str(c) for c in table.frame.columns]
    classes = [_plain(c) for c in getattr(model, "classes_", [])] or None
    samples = Samples(_model_input(spec, X_train), _model_input(spec, X_test), y_train, y_test)
    with atomic_dir(options.out, options.force) as root:
        inputs: list[dict[str, Any]] = []
        if spec.framework == "torch":
            estimator = model.named_steps["model"]
            model_file = "model.pt2"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                estimator.export(root / model_file)
            files = write_tensor_samples(root, samples, TORCH_INPUT, estimator.input_shape, classes)
        else:
            import joblib

            model_file = "model.joblib"
            joblib.dump(model, root / model_file)
            files = write_table_samples(root, samples, features)
            plan = summary["data"]["columns_by_kind"]
            inputs = [{"name": c, "dtype": "string", "shape": [None, 1]} for c in plan["text"]]  # TF-IDF columns
        train_pred = model.predict(_model_input(spec, X_train))
        reference = reference_statistics(X_train, np.asarray(train_pred), table.image_shape is not None, task != TaskKind.REGRESSION)
        write_json(root / "reference.json", reference)
        write_json(root / "metrics.json", summary)
        (root / "report.html").write_text(render(summary), encoding="utf-8")
        write_run_manifest(root, RunManifest(
            run_id=summary["run_id"], name=summary["name"], created_at=summary["created_at"], task=task.value,
            model_name=spec.name, framework=spec.framework, model_file=model_file,
            labels=None if classes is None else tuple(classes),
            target=options.target or (data_mod.BUNDLED_TARGET if options.dataset else None),
            inputs=tuple(RunInput(i["name"], i["dtype"], tuple(i["shape"])) for i in inputs), **files,
            metrics_file="metrics.json", reference_file="reference.json", report="report.html",
            metrics=bundle_metrics(summary), recipe=recipe_of(options, summary)))


def bundle_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The training metrics a bundle manifest carries (`manifest.metrics`)."""
    s = summary["search"]
    return {"run_id": summary["run_id"], "model": summary["model"], "task": summary["task"],
            "test": summary["evaluation"]["metrics"], "cv": {"scoring": s["scoring"], "mean": s["cv_score"], "std": s["cv_std"]},
            "search": s["kind"], "best_params": s["best_params"],
            "train_rows": summary["data"]["train_rows"], "test_rows": summary["data"]["test_rows"],
            "bias_flagged": (summary["bias"] or {}).get("flagged"), "data_sha256": summary["data"].get("sha256")}


def convert_command(out: Path, spec: ModelSpec) -> str:
    """The `edgeml convert` line for this run: int8 where it applies, fp32 for tree/linear graphs."""
    precision = "fp32,int8" if spec.framework == "torch" else "fp32"
    return f"edgeml convert {shlex.quote(str(out))} --to onnx --precision {precision}"


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
