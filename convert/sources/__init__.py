"""Source loaders, tried in order; each turns one kind of SOURCE into ONNX plus a reference model."""

from __future__ import annotations

import importlib

from edgeml.errors import SourceError, UnsupportedModelError

from ..options import ConvertOptions
from .base import SourceLoader, SourceModel

# name -> module defining LOADER; order matters (first match wins). Modules import frameworks lazily.
LOADER_MODULES: dict[str, str] = {
    "run": "edgeml.convert.sources.run_dir",  # an `edgeml train` run directory; hands over to sklearn/pytorch
    "mlflow": "edgeml.convert.sources.mlflow",  # models:/NAME/VERSION, runs:/ID/model; hands over to run/sklearn
    "onnx": "edgeml.convert.sources.onnx_file",
    "booster": "edgeml.convert.sources.boosters",  # XGBoost .json/.ubj/.model, LightGBM .txt booster files
    "pytorch": "edgeml.convert.sources.pytorch",
    "sklearn": "edgeml.convert.sources.sklearn",
    "keras": "edgeml.convert.sources.keras",
}

# Loaders that hand the model over to another loader: not a source kind of their own (compat table).
DELEGATING_LOADERS = frozenset({"run", "mlflow"})


def loaders() -> list[SourceLoader]:
    return [importlib.import_module(m).LOADER for m in LOADER_MODULES.values()]


def describe_supported() -> str:
    return "; ".join(f"{l.name}: {l.description}" for l in loaders())


def load_source(options: ConvertOptions) -> SourceModel:
    for loader in loaders():
        if loader.matches(options.source):
            return loader.load(options.source, options)
    raise UnsupportedModelError(f"cannot tell what kind of model {options.source!r} is. Supported sources: {describe_supported()}")


def check_exists(path_text: str) -> None:
    from pathlib import Path

    if not Path(path_text).exists():
        raise SourceError(f"source {path_text} not found")
