"""Many requests at once through a bounded thread pool: input order kept, every item accounted for."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from bedrock_ft.errors import BedrockFTError, InvocationError
from bedrock_ft.runtime._results import BatchItem, BatchResult, Completion, Usage
from bedrock_ft.runtime._retry import attempts_of

__all__ = ["run_batch"]

log = logging.getLogger("bedrock_ft")


def run_batch(
    inputs: Sequence[Any],
    call: Callable[[Any], Completion],
    *,
    max_concurrency: int,
    on_item: Callable[[BatchItem], None] | None = None,
    progress_bar: bool = False,
    label: str = "invoking",
) -> BatchResult:
    """``call`` on every input, ``max_concurrency`` at a time. An item that fails keeps its error (its
    retries already spent); the others go on."""
    started = time.perf_counter()
    items: list[BatchItem | None] = [None] * len(inputs)
    usage = Usage()

    def one(index: int) -> BatchItem:
        try:
            completion = call(inputs[index])
        except BedrockFTError as exc:
            usage.record(retries=attempts_of(exc) - 1, error=True)
            return BatchItem(index, inputs[index], error=exc)
        except Exception as exc:  # a bug or an unexpected failure: kept on its item, never lost
            error = InvocationError(f"{type(exc).__name__}: {exc}")
            usage.record(error=True)
            return BatchItem(index, inputs[index], error=error)
        usage.record(completion, retries=completion.attempts - 1)
        return BatchItem(index, inputs[index], completion=completion)

    with (
        _bar(progress_bar, len(inputs), label) as advance,
        ThreadPoolExecutor(
            max_workers=max(1, min(max_concurrency, len(inputs) or 1)), thread_name_prefix="bedrock-ft-batch"
        ) as pool,
    ):
        futures = [pool.submit(one, index) for index in range(len(inputs))]
        for future in as_completed(futures):
            item = future.result()
            items[item.index] = item
            advance(item)
            if on_item is not None:
                try:
                    on_item(item)
                except Exception:  # a failing callback must not cost the batch its results
                    log.exception("on_item raised on item %d; the batch goes on", item.index)
    done = tuple(item for item in items if item is not None)
    assert len(done) == len(inputs)
    return BatchResult(done, usage.snapshot(), time.perf_counter() - started, max_concurrency)


class _bar:  # used like a function
    """A rich progress bar on stderr (or nothing), advanced once per finished item."""

    def __init__(self, show: bool, total: int, label: str) -> None:
        self.show, self.total, self.label = show, total, label
        self._progress: Any = None
        self._failed = 0

    def __enter__(self) -> Callable[[BatchItem], None]:
        if not self.show:
            return lambda item: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        task = self._progress.add_task(self.label, total=self.total)

        def advance(item: BatchItem) -> None:
            if not item.ok:
                self._failed += 1
            failed = f" ({self._failed} failed)" if self._failed else ""
            self._progress.update(task, advance=1, description=f"{self.label}{failed}")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
