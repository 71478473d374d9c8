"""Progress for long commands: a bar on a terminal, nothing at all in scripts, cron jobs and pipes.

The bar goes to standard error and disappears when done, so standard output stays exactly what scripts parse.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class Step(Protocol):
    def advance(self, amount: int = 1) -> None: ...

    def stage(self, label: str) -> None: ...


class _Quiet:
    def advance(self, amount: int = 1) -> None:
        pass

    def stage(self, label: str) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task = progress, task

    def advance(self, amount: int = 1) -> None:
        self.progress.advance(self.task, amount)

    def stage(self, label: str) -> None:
        self.progress.update(self.task, description=label)
        self.progress.advance(self.task, 1)


def on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress(label: str, total: int | None) -> Iterator[Step]:
    """``total`` steps (rows, stages); None when unknown (a spinner-like bar)."""
    if not on_terminal():
        yield _Quiet()
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield _Bar(bar, bar.add_task(label, total=total))
