"""`edgeml train`: the command line over train.training."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeml.errors import UsageError
from edgeml.table import print_table

from .config import load_config
from .data import DATASETS
from .from_fleet_cli import add_options as from_fleet_options
from .models import MODELS
from .options import Device, ExplainKind, SearchKind, TaskKind, TrainOptions


@click.command("train")
@click.option("--config", type=click.Path(path_type=Path), is_eager=True, callback=load_config,
              help="YAML file with any of these options (flags given here win).")
@click.option("--data", type=click.Path(path_type=Path), help="Training data: a .csv or .parquet file.")
@click.option("--dataset", help=f"A dataset bundled with scikit-learn instead of --data: {', '.join(DATASETS)}.")
@click.option("--target", help="Column to predict [bundled datasets: target].")
@click.option("--task", type=click.Choice([t.value for t in TaskKind]), help="[default: inferred from the target]")
@click.option("--model", "model", help=f"Model: {', '.join(MODELS)}.")
@click.option("--search", type=click.Choice([s.value for s in SearchKind]), default="none", show_default=True,
              help="Hyperparameter search.")
@click.option("--trials", type=int, default=20, show_default=True, help="Candidates for random search, trials for bayes.")
@click.option("--cv", type=int, default=5, show_default=True, help="Cross-validation folds.")
@click.option("--test-size", type=float, default=0.2, show_default=True, help="Fraction held out as the test split.")
@click.option("--sensitive", help="Column to check for bias: per-group accuracy, selection rate, TPR and gaps.")
@click.option("--bias-threshold", type=float, default=0.1, show_default=True, help="Flag a per-group gap above this.")
@click.option("--positive-label", help="Bias: the favourable class [default: the last class].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice([d.value for d in Device]), default="cpu", show_default=True, help="PyTorch models.")
@click.option("--epochs", type=int, help="PyTorch models: maximum epochs (early stopping may end sooner).")
@click.option("--ray", "ray_address", metavar="ADDRESS|auto",
              help="Run random/bayes search as Ray Tune trials on this Ray cluster (needs edgeml[ray]).")
@click.option("--jobs", "n_jobs", type=int, default=-1, show_default=True, help="Parallel processes for CV and search (-1: all cores).")
@click.option("--explain", type=click.Choice([e.value for e in ExplainKind]), default=ExplainKind.PERMUTATION.value,
              show_default=True, help="Feature importance in the report: permutation, SHAP (slower, needs shap) or none.")
@click.option("--robustness/--no-robustness", default=True, show_default=True,
              help="Report the test metric under Gaussian input noise (and FGSM for PyTorch models).")
@click.option("--mlflow", "mlflow_uri", metavar="URI",
              help="Log the run and its model to MLflow: file:./mlruns, sqlite:///mlflow.db or http://host:port (needs edgeml[mlflow]).")
@click.option("--register", metavar="NAME", help="With --mlflow: register the model as a new version of NAME.")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory to create.")
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@from_fleet_options
def train(config: Path | None, data: Path | None, dataset: str | None, target: str | None, task: str | None, model: str | None,
          search: str, trials: int, cv: int, test_size: float, sensitive: str | None, bias_threshold: float,
          positive_label: str | None, seed: int, device: str, epochs: int | None, ray_address: str | None, n_jobs: int,
          explain: str, robustness: bool,
          mlflow_uri: str | None, register: str | None, out: Path | None, force: bool, as_json: bool,
          from_fleet: str | None = None, fleet_url: str | None = None, fleet_token: str | None = None,
          since: str | None = None, run_dir: Path | None = None, pseudo_label: bool = False) -> None:
    """Train a model with cross-validation, search, evaluation and bias checks into a run directory.

    The run directory holds the model, metrics.json, report.html, reference histograms and
    calibration/validation samples; `edgeml convert RUN_DIR` turns it into a bundle.
    """
    from .progress import Reporter
    from .training import train as run_train

    if from_fleet:  # the old run's recipe decides model, data and search (train/from_fleet.py)
        from .from_fleet_cli import run

        if model or data or dataset or target:
            raise UsageError("--from-fleet retrains with the old run's recipe: drop --model/--data/--dataset/--target")
        return run(from_fleet, fleet_url, fleet_token, since, run_dir, pseudo_label, out, force, n_jobs, as_json)
    if not model:
        raise UsageError(f"pass --model NAME ({', '.join(MODELS)})")
    if out is None:
        raise UsageError("pass --out DIR (the run directory to create)")
    options = TrainOptions(
        out=Path(out), model=model, data=Path(data) if data else None, dataset=dataset, target=target,
        task=TaskKind(task) if task else None, search=SearchKind(search), trials=trials, cv=cv, test_size=test_size,
        sensitive=sensitive, bias_threshold=bias_threshold, positive_label=positive_label, seed=seed, device=Device(device),
        epochs=epochs, ray=ray_address, n_jobs=n_jobs, mlflow=mlflow_uri, register=register, explain=ExplainKind(explain),
        robustness=robustness, force=force,
    )
    result = run_train(options, Reporter(quiet=as_json))
    if as_json:
        logged = result.mlflow.to_dict() if result.mlflow else None
        click.echo(json.dumps({"out": str(result.out), "convert": result.convert_command, **result.summary, "mlflow": logged}, indent=2))
        return
    _print(result)


def _print(result) -> None:
    s = result.summary
    rows = [[k, v] for k, v in s["evaluation"]["metrics"].items()]
    rows.append([f"cv {s['search']['scoring']}", s["search"]["cv_score"]])
    print_table(f"{s['model']} ({s['task']}) -> {result.out}", ["metric (test split)", "value"], rows)
    if s["search"]["best_params"]:
        click.echo("best parameters: " + json.dumps(s["search"]["best_params"]))
    d = s["data"]
    click.echo(f"data: {d['rows_read']} rows read, {d['duplicates_dropped']} duplicates dropped, "
               f"{sum(d['missing_values'].values())} missing values imputed, {d['train_rows']} train / {d['test_rows']} test")
    if s["bias"]:
        b = s["bias"]
        state = f"FLAGGED ({', '.join(b['flagged'])})" if b["flagged"] else "no gap above threshold"
        click.echo(f"bias by {b['column']}: gaps {json.dumps(b['gaps'])}, threshold {b['threshold']}: {state}")
    if s.get("robustness"):
        click.echo(robustness_line(s["robustness"]))
    if result.mlflow:
        m = result.mlflow
        click.echo(f"mlflow: run {m.run_id}, model {m.model_uri}" + (f", registered as {m.registered}" if m.registered else ""))
    click.echo(f"report: {result.out / 'report.html'}")
    click.echo(f"next: {result.convert_command}")


def robustness_line(rob: dict) -> str:
    """One line: the metric clean, under each noise strength and (torch) each FGSM epsilon."""
    noise = ", ".join(f"{r['strength']}σ {r['value']:.3f}" for r in rob["noise"])
    line = f"robustness ({rob['metric']} on {rob['rows']} test rows): clean {rob['baseline']:.3f}; noise {noise}"
    if rob.get("fgsm"):
        line += "; FGSM " + ", ".join(f"ε={r['epsilon']}σ {r['value']:.3f}" for r in rob["fgsm"])
    return line
