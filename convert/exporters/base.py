"""The exporter protocol: one module per target format, registered by name in exporters/__init__.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..data import Dataset
from ..options import ConvertOptions, Precision
from ..sources.base import SourceModel


@dataclass
class ExportContext:
    source: SourceModel
    options: ConvertOptions
    calibration: Dataset | None
    bundle_root: Path  # the staging directory; artifacts go under bundle_root/artifacts/
    validation: Dataset | None  # held-out data with labels, for accuracy-controlled quantization
    scratch: Path  # a temporary directory removed after the conversion (intermediate models)
    cache: dict[str, Any] = field(default_factory=dict)  # intermediates shared by precisions (e.g. a TF SavedModel)


@dataclass
class ExportedArtifact:
    format: str
    precision: Precision
    backend: str
    path: str  # what the backend loads, relative to the bundle root
    files_root: str  # file or directory holding every file of this artifact, relative to the bundle root
    details: dict[str, Any] = field(default_factory=dict)


class Exporter(Protocol):
    format: str
    backend: str  # the runtime backend that runs (and validates) this format
    description: str
    extra: str  # pip extra that brings the converter

    def support(self, source_kind: str, precision: Precision) -> str | None:
        """None when the combination is supported, else the reason it is not (for tables and early errors)."""
        ...

    def check(self, source: SourceModel, precision: Precision) -> str | None:
        """Like support(), for a loaded model (operators, tree ensembles...); checked before any export."""
        ...

    def export(self, ctx: ExportContext, precision: Precision) -> ExportedArtifact:
        ...
