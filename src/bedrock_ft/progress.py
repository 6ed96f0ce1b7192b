"""How every stage reports progress: the same callback type and the same ``progress_bar`` switch.

Each stage class takes ``progress``, a :data:`Progress` callback that receives one line per step
(loading, uploading, waiting...), and ``progress_bar``, which shows a live bar on stderr for the long
part of the stage (records built, training steps, bytes uploaded, records evaluated). ``None`` means
"when stderr is a terminal", so a bar never lands in a log file or a notebook's captured output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["OnBytes", "Progress", "byte_bar", "quiet", "show_bar", "step_display"]

Progress = Callable[[str], None]
"""A stage's progress callback: called with one line of text per step."""

OnBytes = Callable[[str, int], None]
"""Told of every ``n`` bytes transferred for file ``name``: ``on_bytes(name, n)``."""


def quiet(message: str) -> None:
    """The progress callback of a stage given none: says nothing."""


def show_bar(progress_bar: bool | None) -> bool:
    """Whether to draw a live bar: as asked, or (``None``) when stderr is a terminal."""
    if progress_bar is not None:
        return progress_bar
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def byte_bar(
    show: bool, total: int | None, label: str, callback: OnBytes | None = None
) -> Iterator[OnBytes | None]:
    """A rich bar in bytes when ``show``, plus the caller's own byte ``callback``."""
    if not show:
        yield callback
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(TextColumn(label), *columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)

        def on_bytes(name: str, n: int) -> None:
            bar.update(task, advance=n)
            if callback is not None:
                callback(name, n)

        yield on_bytes


@contextmanager
def step_display(console: Any = None) -> Iterator[Progress]:
    """A :data:`Progress` callback that shows each line as a step with a spinner and its elapsed time
    (the previous step is marked done when the next one starts)."""
    from rich.console import Console
    from rich.progress import Progress as Bar
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True, highlight=False)
    with Bar(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        current: list[Any] = []

        def step(message: str) -> None:
            if current:
                bar.update(current[-1], total=1, completed=1)
            current.append(bar.add_task(message, total=None))

        yield step
        if current:
            bar.update(current[-1], total=1, completed=1)
