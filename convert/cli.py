"""`edgeml convert`: the command line over convert.pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgeml.errors import UsageError, ValidationFailed
from edgeml.schema import parse_input_spec
from edgeml.table import human_size, print_table
from edgeml.task_metrics import DETECTION_LAYOUTS

from .bounds import help_text
from .exporters import format_names
from .options import CalibrationMethod, ConvertOptions, Precision, QuantMode, QuantOptions, Task, ToleranceOverride


def _csv_choice(value: str, allowed: list[str], option: str) -> list[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise UsageError(f"{option} {value!r}: choose from {', '.join(allowed)} (comma-separated)")
    return list(dict.fromkeys(items))


def _list_formats(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """--list-formats [--json]: both options are eager, so both are parsed before SOURCE is required;
    whichever is processed second prints the table and exits."""
    ctx.meta[f"edgeml.convert.{param.name}"] = value
    wanted, as_json = ctx.meta.get("edgeml.convert.list_formats"), ctx.meta.get("edgeml.convert.as_json")
    if ctx.resilient_parsing or not wanted or as_json is None:
        return value
    from .compat import combinations, grid

    if as_json:
        click.echo(json.dumps([c.to_dict() for c in combinations()], indent=2))
    else:
        columns, rows = grid()
        print_table("edgeml convert: source kind x format x precision", columns, rows)
    ctx.exit(0)


@click.command("convert", epilog=help_text())
@click.argument("source")
@click.option("--list-formats", is_flag=True, is_eager=True, expose_value=False, callback=_list_formats,
              help="Print which source kinds convert to which format and precision (with --json: as JSON), and exit.")
@click.option("--out", type=click.Path(path_type=Path), help="Bundle directory to create [default: ./NAME-VERSION].")
@click.option("--name", help="Model name (letters, digits, . _ -) [required; for an `edgeml train` run: the run's name].")
@click.option("--version", "version", help="Model version, e.g. 1.0.0 [required; for an `edgeml train` run: its run id].")
@click.option("--to", "formats", default="onnx", show_default=True, help=f"Target formats, comma-separated: {', '.join(format_names())}.")
@click.option("--precision", default="fp32", show_default=True, help="Precisions, comma-separated: fp32, fp16, int8.")
@click.option("--calibration", type=click.Path(path_type=Path), help="Calibration data (.npz keyed by input name, or .csv).")
@click.option("--validation", type=click.Path(path_type=Path), help="Validation data; default: 20% held out of --calibration.")
@click.option("--target", help="Label key/column in the data files [default: label, labels, target or y].")
@click.option("--sign-key", type=click.Path(path_type=Path), help="ed25519 private key (edgeml keys generate).")
@click.option("--input", "inputs", multiple=True, metavar="NAME:DTYPE:SHAPE", help="Input spec, e.g. input:float32:?x1x8x8 (? = dynamic). Repeatable.")
@click.option("--weights", type=click.Path(path_type=Path), help="state_dict file for a package.module:factory SOURCE.")
@click.option("--task", type=click.Choice([t.value for t in Task]), help="Model task: picks the validation bound below [default: inferred; see README 'Validation bounds'].")
@click.option("--detection-layout", type=click.Choice(DETECTION_LAYOUTS), default="auto", show_default=True,
              help="--task detection: one output holding boxes (cx, cy, w, h) and class scores, channels-first [batch, 4+C, N] or channels-last [batch, N, 4+C]; auto: the smaller axis holds 4+C.")
@click.option("--labels", help="Class labels, comma-separated (PyTorch/ONNX classifiers).")
@click.option("--tokenizer", type=click.Path(path_type=Path), help="Text models: a Hugging Face tokenizers JSON to ship in the bundle [default: tokenizer.json beside the source].")
@click.option("--quantization", type=click.Choice([m.value for m in QuantMode]), default="auto", show_default=True, help="int8: static (Conv graphs, calibrated) or dynamic (MatMul graphs).")
@click.option("--calibration-method", type=click.Choice([m.value for m in CalibrationMethod]), default="minmax", show_default=True)
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="int8 weight quantization granularity.")
@click.option("--atol", type=float, help="Override the absolute tolerance of every precision.")
@click.option("--rtol", type=float, help="Override the relative tolerance (times max |source output|).")
@click.option("--min-agreement", type=float, help="Override the minimum top-1 agreement with the source.")
@click.option("--max-metric-drop", type=float, help="Override the allowed drop of accuracy / R^2.")
@click.option("--max-rel-error", type=float, help="Override the allowed max|error| / output scale (every task).")
@click.option("--min-cosine", type=float, help="Override the required mean cosine similarity (embeddings).")
@click.option("--min-box-iou", type=float, help="Override the required mean box IoU (detection).")
@click.option("--max-accuracy-drop", type=float, help="OpenVINO int8: NNCF accuracy-controlled quantization keeping accuracy within this absolute drop (needs labels in the validation data).")
@click.option("--allow-degraded", is_flag=True, help="Keep artifacts that fail validation in the bundle (marked failed; never selected by a device).")
@click.option("--strict", is_flag=True, help="All or nothing: write no bundle when any target fails (default: ship the passing ones, list the failed).")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset for exported graphs.")
@click.option("--json", "as_json", is_flag=True, is_eager=True, callback=_list_formats, help="Print the result as JSON.")
def convert(source: str, out: Path | None, name: str, version: str, formats: str, precision: str,
            calibration: Path | None, validation: Path | None, target: str | None, sign_key: Path | None,
            inputs: tuple[str, ...], weights: Path | None, task: str | None, labels: str | None,
            quantization: str, calibration_method: str, per_channel: bool, atol: float | None,
            rtol: float | None, min_agreement: float | None, max_metric_drop: float | None,
            max_accuracy_drop: float | None, allow_degraded: bool, force: bool, opset: int, as_json: bool,
            detection_layout: str = "auto", max_rel_error: float | None = None, min_cosine: float | None = None,
            min_box_iou: float | None = None, strict: bool = False, tokenizer: Path | None = None) -> None:
    """Convert SOURCE (PyTorch, scikit-learn, Keras/SavedModel or ONNX) into a validated, signed, versioned bundle.

    Every artifact is run on the backend a device will use and compared with the source model
    against its task's bound (table below). The bundle holds every passing artifact; a failing target
    ships no file, is listed in the manifest with its reason, and the exit status is 1 (--strict:
    nothing is written). Pickled scikit-learn files execute code when loaded: convert only files you trust.
    """
    from .pipeline import convert as run_convert

    name, version = _name_and_version(source, name, version)
    options = ConvertOptions(
        source=source, out=out or Path(f"{name}-{version}"), name=name, version=version,
        formats=_csv_choice(formats, format_names(), "--to"),
        precisions=[Precision(p) for p in _csv_choice(precision, [p.value for p in Precision], "--precision")],
        calibration=calibration, validation=validation, sign_key=sign_key,
        inputs=[parse_input_spec(i) for i in inputs], weights=weights,
        task=Task(task) if task else None, labels=labels.split(",") if labels else None, target=target,
        quant=QuantOptions(QuantMode(quantization), CalibrationMethod(calibration_method), per_channel),
        tolerance=ToleranceOverride(atol, rtol, min_agreement, max_metric_drop, max_rel_error, min_cosine, min_box_iou),
        allow_degraded=allow_degraded, strict=strict, detection_layout=detection_layout, force=force, opset=opset,
        max_accuracy_drop=max_accuracy_drop, tokenizer=tokenizer,
    )
    result = _with_progress(run_convert, options, quiet=as_json)
    if as_json:
        click.echo(json.dumps(_summary(result), indent=2))
    else:
        _print_result(result, signed=sign_key is not None)
    if result.failed:
        raise ValidationFailed(_incomplete(result), report=result.failed)


def _print_result(result, signed: bool) -> None:
    rows = []
    for r in result.results:
        e, v = r.entry, r.report
        note = "int8 slower than fp32" if e.details.get("slower_than_fp32") else ""
        rows.append([e.format, e.precision, human_size(e.size), v.max_abs_error, v.relative_error, _task_figure(v),
                     v.top1_agreement, v.metric_delta, e.latency.get("median_ms"), "pass" if v.passed else "FAIL (kept)", note])
    for f in result.failed:
        rows.append([f.format, f.precision, "-", f.validation.get("max_abs_error"), f.validation.get("relative_error"),
                     None, f.validation.get("top1_agreement"), f.validation.get("metric_delta"), None,
                     "FAIL, not shipped", f"{f.stage}: {f.reason[:160]}"])
    print_table(f"{result.manifest.name} {result.manifest.version} ({result.manifest.task}) -> {result.bundle}",
                ["format", "precision", "size", "max err", "rel err", "cos/IoU", "agreement", "metric Δ", "latency ms",
                 "validation", "note"], rows)
    how = "signed" if signed else "unsigned (pass --sign-key to sign)"
    click.echo(f"bundle written: {result.bundle} ({how})")


def _task_figure(report) -> float | None:
    """The task's own closeness figure: mean cosine (embeddings) or box IoU (detection)."""
    return report.cosine_mean if report.cosine_mean is not None else report.box_iou


def _incomplete(result) -> str:
    total = len(result.results) + len(result.failed)
    keys = ", ".join(f"{f.key} ({f.reason[:200]})" for f in result.failed)
    return (f"{len(result.failed)} of {total} requested targets failed and were not shipped: {keys}; "
            f"the bundle {result.bundle} holds the {len(result.results)} that passed (--strict writes nothing instead)")


def _name_and_version(source: str, name: str | None, version: str | None) -> tuple[str, str]:
    """--name/--version, defaulting to the run's name and run id for an `edgeml train` run directory."""
    if name is None or version is None:
        from .sources.mlflow import registry_defaults
        from .sources.run_dir import run_defaults

        defaults = run_defaults(source) or registry_defaults(source)  # models:/NAME/VERSION names the bundle
        if defaults is None:
            missing = " and ".join(o for o, v in (("--name", name), ("--version", version)) if v is None)
            raise UsageError(f"missing option {missing} (only an `edgeml train` run directory supplies them)")
        name, version = name or defaults[0], version or defaults[1]
    return name, version


def _with_progress(fn, options: ConvertOptions, quiet: bool):
    try:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    except ImportError:
        return fn(options)
    if quiet or not sys.stderr.isatty():
        return fn(options, lambda msg: None if quiet else click.echo(f"... {msg}", err=True))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as progress:
        task = progress.add_task("converting", total=None)
        return fn(options, lambda msg: progress.update(task, description=msg))


def _summary(result) -> dict:
    return {
        "bundle": str(result.bundle),
        "name": result.manifest.name,
        "version": result.manifest.version,
        "signed": (result.bundle / "manifest.sig").exists(),
        "artifacts": [
            {"format": r.entry.format, "precision": r.entry.precision, "size": r.entry.size,
             "max_abs_error": r.report.max_abs_error, "top1_agreement": r.report.top1_agreement,
             "metric_delta": r.report.metric_delta, "latency_ms": r.entry.latency.get("median_ms"),
             "relative_error": r.report.relative_error, "cosine_mean": r.report.cosine_mean,
             "box_iou": r.report.box_iou, "passed": r.report.passed,
             "slower_than_fp32": bool(r.entry.details.get("slower_than_fp32"))}
            for r in result.results
        ],
        "task": result.manifest.task,
        "failed": [f.to_dict() for f in result.failed],
        "complete": result.complete,
    }
