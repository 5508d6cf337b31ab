"""The source kind x format x precision support table, computed from the exporters' rules.

Each exporter says which combinations it refuses outright (`support()`) and which rules it checks on
the loaded model (`limits()` / `check()`). This one table drives `edgeml convert --list-formats`
(and `--json`), the pipeline's refusal before any work, and the "Compatibility" section of
docs/convert.md, so the table always says what the code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeml.errors import UnsupportedModelError

from .exporters import format_names, get_exporter
from .options import Precision
from .sources import DELEGATING_LOADERS, LOADER_MODULES
from .sources.base import SourceModel


@dataclass(frozen=True)
class Combination:
    source_kind: str
    format: str
    precision: str
    reason: str | None  # None = supported
    limits: tuple[str, ...] = ()  # supported, with these rules checked on the loaded model

    @property
    def supported(self) -> bool:
        return self.reason is None

    @property
    def status(self) -> str:
        if self.reason:
            return f"no: {self.reason}"
        return f"yes ({'; '.join(self.limits)})" if self.limits else "yes"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source_kind, "format": self.format, "precision": self.precision,
                "supported": self.supported, "reason": self.reason, "limits": list(self.limits)}


def source_kinds() -> list[str]:
    return [k for k in LOADER_MODULES if k not in DELEGATING_LOADERS]


def combination(kind: str, fmt: str, precision: Precision) -> Combination:
    exporter = get_exporter(fmt)
    reason = exporter.support(kind, precision)
    limits = () if reason else tuple(rule.summary for rule in exporter.limits(kind, precision))
    return Combination(kind, fmt, precision.value, reason, limits)


def combinations() -> list[Combination]:
    return [combination(kind, fmt, precision) for kind in source_kinds() for fmt in format_names() for precision in Precision]


def refuse_unsupported(kind: str, formats: list[str], precisions: list[Precision]) -> None:
    """Before loading anything: raise for the first requested combination the table refuses."""
    for fmt in formats:
        for precision in precisions:
            _refuse_if(fmt, precision, combination(kind, fmt, precision).reason)


def refuse_unfit(source: SourceModel, formats: list[str], precisions: list[Precision]) -> None:
    """After loading: raise for the first requested combination the model does not meet."""
    for fmt in formats:
        exporter = get_exporter(fmt)
        for precision in precisions:
            _refuse_if(fmt, precision, exporter.support(source.kind, precision) or exporter.check(source, precision))


def _refuse_if(fmt: str, precision: Precision, reason: str | None) -> None:
    if reason:
        raise UnsupportedModelError(f"{fmt}/{precision.value} is not supported for this model: {reason}")


def grid() -> tuple[list[str], list[list[str]]]:
    """Columns and rows: one row per (source kind, format), one column per precision."""
    precisions = [p.value for p in Precision]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for c in combinations():
        cells.setdefault((c.source_kind, c.format), {})[c.precision] = c.status
    rows = [[kind, fmt, *(by_precision[p] for p in precisions)] for (kind, fmt), by_precision in cells.items()]
    return ["source", "format", *precisions], rows


def markdown_table() -> str:
    columns, rows = grid()
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
