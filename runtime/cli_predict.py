"""`edgeml predict`: run a bundle on inputs from a file and print the outputs."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from edgeml.table import print_table

ROWS_SHOWN = 20


def backend_help() -> str:
    from .backends import BACKEND_MODULES

    return f"Backend: auto or one of {', '.join(BACKEND_MODULES)} (comma-separated = preference order)."


@click.command("predict")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--input", "input_file", required=True, type=click.Path(path_type=Path),
              help="Inputs: .npz (arrays by input name), .csv (feature columns) or .json (records, arrays or an OIP "
                   "request); with --output also .parquet and a directory of .npz/.csv/.parquet files.")
@click.option("--output", "output_file", type=click.Path(path_type=Path),
              help="Write every prediction to this .parquet, .csv or .npz file (streamed in chunks) instead of printing.")
@click.option("--chunk-size", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Rows per model call with --output.")
@click.option("--backend", default="auto", show_default=True, help=backend_help())
@click.option("--precision", default="auto", show_default=True, help="Precision: auto, fp32, fp16 or int8 (comma-separated = preference order).")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads [default: the engine's].")
@click.option("--verify-key", type=click.Path(path_type=Path), help="Public key (edgeml.pub); the bundle's signature must verify.")
@click.option("--json", "as_json", is_flag=True, help="Print the model info and every output as JSON.")
def predict(bundle: Path, input_file: Path, output_file: Path | None, chunk_size: int, backend: str, precision: str,
            threads: int | None, verify_key: Path | None, as_json: bool) -> None:
    """Run BUNDLE on the inputs in --input and print the outputs (or stream them to --output)."""
    from .input_files import read_inputs
    from .model import load

    model = load(bundle, backend=backend, precision=precision, threads=threads, verify_key=verify_key)
    if output_file is not None:
        _predict_to_file(model, input_file, output_file, chunk_size, as_json)
        return
    outputs = model.predict(read_inputs(input_file, model.inputs))
    if as_json:
        click.echo(json.dumps({"model": model.info.to_dict(),
                               "outputs": {k: _plain(v) for k, v in outputs.items()}}, indent=2))
        return
    i = model.info
    n = min((len(v) for v in outputs.values() if np.ndim(v)), default=1)
    rows = [[r] + [_cell(v[r]) if np.ndim(v) else _cell(v) for v in outputs.values()] for r in range(min(n, ROWS_SHOWN))]
    click.echo(f"{i.name} {i.version} ({i.format}/{i.precision} on {i.backend})")
    print_table(f"{n} prediction(s)", ["#", *outputs], rows)
    if n > ROWS_SHOWN:
        click.echo(f"... {n - ROWS_SHOWN} more rows (use --json for all)")


def _predict_to_file(model, input_file: Path, output_file: Path, chunk: int, as_json: bool) -> None:
    from .batch_io import open_inputs
    from .batch_predict import predict_files, total_rows

    files = open_inputs(input_file, model.inputs)
    stderr = click.get_text_stream("stderr")
    if stderr.isatty():  # a bar on a terminal only: scripts and --json output stay clean
        with click.progressbar(length=total_rows(files) or 0, label="predicting", file=stderr, show_pos=True) as bar:
            summary = predict_files(model, files, output_file, Path(input_file).is_dir(), chunk, bar.update)
    else:
        summary = predict_files(model, files, output_file, Path(input_file).is_dir(), chunk)
    i = model.info
    if as_json:
        click.echo(json.dumps({"model": i.to_dict(), "rows": summary.rows, "files": summary.files,
                               "output": str(summary.output)}))
    else:
        click.echo(f"{i.name} {i.version} ({i.format}/{i.precision} on {i.backend}): "
                   f"{summary.rows} row(s) from {summary.files} file(s) -> {summary.output}")


def _plain(value: np.ndarray):
    arr = np.asarray(value)
    if arr.dtype.kind in "fc":
        return np.where(np.isfinite(arr), arr, None).tolist() if not np.isfinite(arr).all() else arr.tolist()
    return arr.astype(str).tolist() if arr.dtype.kind in "USO" else arr.tolist()


def _cell(value) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        v = arr.item()
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    flat = arr.reshape(-1)
    if flat.size > 8:
        return f"[{flat.size} values]"
    return "[" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat.tolist()) + "]"
