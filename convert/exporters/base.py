"""The exporter protocol: one module per target format, registered by name in exporters/__init__.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

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


Check = Callable[[SourceModel, Precision], "str | None"]  # (loaded model, precision) -> reason it is refused


@dataclass(frozen=True, kw_only=True)
class Scope:
    """Which (source kind, precision) combinations a rule applies to; None: all of them."""

    kinds: tuple[str, ...] | None = None
    skip_kinds: tuple[str, ...] = ()
    precisions: tuple[Precision, ...] | None = None

    def applies(self, kind: str, precision: Precision) -> bool:
        return ((self.kinds is None or kind in self.kinds) and kind not in self.skip_kinds
                and (self.precisions is None or precision in self.precisions))


@dataclass(frozen=True)
class Refusal(Scope):
    """A combination an exporter never supports, whatever the model."""

    reason: str


@dataclass(frozen=True)
class Limit(Scope):
    """A rule checked on the loaded model before any export; `summary` is what the support table says."""

    summary: str
    check: Check


class Exporter(Protocol):
    format: str
    backend: str  # the runtime backend that runs (and validates) this format
    description: str
    extra: str  # pip extra that brings the converter

    def support(self, source_kind: str, precision: Precision) -> str | None:
        """None when the combination is supported, else the reason it is not (for tables and early errors)."""
        ...

    def limits(self, source_kind: str, precision: Precision) -> list[Limit]:
        """The model-dependent rules a supported combination is checked against."""
        ...

    def check(self, source: SourceModel, precision: Precision) -> str | None:
        """Like support(), for a loaded model (operators, tree ensembles...); checked before any export."""
        ...

    def export(self, ctx: ExportContext, precision: Precision) -> ExportedArtifact:
        ...


class RuleBasedExporter:
    """support(), limits() and check() from data: the precisions an exporter writes, its refusals and its limits.

    The support table (convert/compat.py) and the pipeline's up-front checks read the same rules.
    """

    format: str
    precisions: tuple[Precision, ...] = tuple(Precision)
    refusals: tuple[Refusal, ...] = ()
    rules: tuple[Limit, ...] = ()

    def support(self, source_kind: str, precision: Precision) -> str | None:
        if precision not in self.precisions:
            return f"{self.format} has no {precision.value} export"
        return next((r.reason for r in self.refusals if r.applies(source_kind, precision)), None)

    def limits(self, source_kind: str, precision: Precision) -> list[Limit]:
        return [r for r in self.rules if r.applies(source_kind, precision)]

    def check(self, source: SourceModel, precision: Precision) -> str | None:
        for rule in self.limits(source.kind, precision):
            reason = rule.check(source, precision)
            if reason:
                return reason
        return None
