"""Progress on stderr: a rich bar on a terminal, plain `... step` lines otherwise (logs, tests)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import click

Advance = Callable[[], None]


class Reporter:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.live = not quiet and sys.stderr.isatty()

    def step(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"... {message}", err=True)

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Advance]:
        """A progress bar of `total` steps (None: a spinner with elapsed time); yields advance()."""
        self.step(description)
        if not self.live:
            yield lambda: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*(columns if total else columns[:2] + columns[-1:]), transient=True) as progress:
            task = progress.add_task(description, total=total)
            yield lambda: progress.advance(task)
