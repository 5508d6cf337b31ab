"""Print result tables: rich when it is installed (workstations), plain aligned text otherwise (devices)."""

from __future__ import annotations

import sys
from typing import Any, Sequence


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], file=None) -> None:
    file = file or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        print(title, file=file)
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths)), file=file)
        for r in cells:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)), file=file)
        return
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in cells:
        table.add_row(*r)
    Console(file=file, width=max(100, min(160, sum(len(c) for c in columns) * 3))).print(table)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.4g}"
    return str(v)


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
