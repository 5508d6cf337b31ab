"""The source kind x format x precision compatibility table, computed from the registries.

Drives `edgeml convert --list-formats` and the "Compatibility" section of docs/convert.md, so the
table always says what the code does.
"""

from __future__ import annotations

from dataclasses import dataclass

from .exporters import format_names, get_exporter
from .options import Precision
from .sources import DELEGATING_LOADERS, LOADER_MODULES


@dataclass(frozen=True)
class Combination:
    source_kind: str
    format: str
    precision: str
    reason: str | None  # None = supported
    limits: str | None  # supported, with model-dependent limits checked on the loaded model

    @property
    def status(self) -> str:
        if self.reason:
            return f"no: {self.reason}"
        return f"yes ({self.limits})" if self.limits else "yes"


def combinations() -> list[Combination]:
    rows = []
    for kind in (k for k in LOADER_MODULES if k not in DELEGATING_LOADERS):
        for fmt in format_names():
            exporter = get_exporter(fmt)
            limits = getattr(exporter, "limits", {}).get(kind)
            for precision in Precision:
                rows.append(Combination(kind, fmt, precision.value, exporter.support(kind, precision), limits))
    return rows


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
