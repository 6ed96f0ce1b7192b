"""Training progress: a rich progress bar (loss, tokens/s, ETA) and ``metrics.jsonl`` in the run directory.

Both are one ``transformers.TrainerCallback``. Each line of ``metrics.jsonl`` is a JSON object:
``{"event": "start", ...}`` when a run (or a resumed run) begins, one ``{"event": "log", "step": ...,
"loss": ..., "tokens_per_second": ...}`` per logging interval, and ``{"event": "end", ...}``.
A resumed run appends to the same file, so the file tells the whole story of a run.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback  # noqa: TID253 - imported only by the trainer, when training

__all__ = ["StepBar", "TrainingMonitor"]


class TrainingMonitor(TrainerCallback):  # type: ignore[misc]
    """Times every optimizer step and counts its tokens; logs to ``metrics_file`` and a progress bar.

    On a CUDA GPU a step is timed with CUDA events, read once they have passed (at the latest when
    the trainer logs), not by waiting for the GPU at every step's end: a wait there lets the GPU run
    dry while the CPU prepares the next step.
    """

    def __init__(
        self,
        metrics_file: Path,
        *,
        progress_bar: bool = True,
        cuda: bool = False,
        emit: Callable[[dict[str, Any]], None] | None = None,
        enabled: bool = True,
    ) -> None:
        self.metrics_file = metrics_file
        self.enabled = enabled  # False on every rank but 0: it times steps, but writes nothing
        self.emit = emit  # rank 0 of a launched run: events for the launcher's console
        self.progress_bar = progress_bar
        self.cuda = cuda
        self.step_seconds: list[float] = []
        self.step_tokens: list[int] = []
        self.losses: list[tuple[int, float]] = []
        self.start_step = 0
        self._t0 = 0.0
        self._step_started = 0.0
        self._tokens_before = 0
        self._window: list[tuple[float, int]] = []
        self._bar: StepBar | None = None
        self._last_loss: float | None = None
        self._start_event: Any = None
        self._pending: list[tuple[Any, Any, int]] = []  # CUDA steps not read yet: (start, end, tokens)

    # --- helpers -----------------------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        with self.metrics_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def _emit(self, event: dict[str, Any]) -> None:
        if self.emit is not None:
            self.emit(event)

    def _event(self) -> Any:
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _record(self, seconds: float, tokens: int) -> None:
        self.step_seconds.append(seconds)
        self.step_tokens.append(tokens)
        self._window.append((seconds, tokens))

    def _read_events(self, *, wait: bool) -> None:
        """Turn the CUDA steps that have finished (``wait``: all of them) into step times, in order."""
        while self._pending:
            start, end, tokens = self._pending[0]
            if wait:
                end.synchronize()
            elif not end.query():
                return
            self._pending.pop(0)
            self._record(start.elapsed_time(end) / 1000, tokens)

    def tokens_per_second(self, skip: int = 2) -> float | None:
        """Median step throughput over the steps after the first ``skip`` (warm-up)."""
        self._read_events(wait=True)
        pairs = list(zip(self.step_seconds, self.step_tokens, strict=True))[skip:] or list(
            zip(self.step_seconds, self.step_tokens, strict=True)
        )
        rates = [tokens / seconds for seconds, tokens in pairs if seconds > 0 and tokens > 0]
        return statistics.median(rates) if rates else None

    # --- Trainer events ----------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start_step = state.global_step
        self._t0 = time.perf_counter()
        self._tokens_before = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        self._write(
            {
                "event": "start",
                "step": state.global_step,
                "max_steps": state.max_steps,
                "resumed": state.global_step > 0,
            }
        )
        if self.progress_bar:
            self._bar = StepBar(total=state.max_steps, done=state.global_step)
        self._emit({"event": "start", "step": state.global_step, "max_steps": state.max_steps})

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_started = time.perf_counter()
        if self.cuda:
            self._start_event = self._event()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        tokens, self._tokens_before = seen - self._tokens_before, seen
        if self.cuda and self._start_event is not None:
            self._pending.append((self._start_event, self._event(), tokens))
            self._start_event = None
            self._read_events(wait=False)
        else:
            self._record(time.perf_counter() - self._step_started, tokens)
        rate = sum(t for _, t in self._window[-20:]) / max(sum(s for s, _ in self._window[-20:]), 1e-9)
        if self._bar is not None:
            self._bar.update(state.global_step, self._last_loss, rate)
        self._emit(
            {"event": "step", "step": state.global_step, "loss": self._last_loss, "rate": round(rate, 1)}
        )

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        logs = dict(logs or {})
        self._read_events(wait=True)
        if "loss" in logs:
            self._last_loss = float(logs["loss"])
            self.losses.append((state.global_step, self._last_loss))
        window_s = sum(s for s, _ in self._window)
        window_t = sum(t for _, t in self._window)
        self._window = []
        record: dict[str, Any] = {"event": "log", "step": state.global_step, "epoch": state.epoch}
        record.update({k: v for k, v in logs.items() if isinstance(v, int | float)})
        if window_s > 0 and window_t > 0:
            record["tokens_per_second"] = round(window_t / window_s, 1)
        record["elapsed_s"] = round(time.perf_counter() - self._t0, 2)
        if self.cuda:
            import torch

            record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        self._write(record)
        self._emit(record)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write({"event": "checkpoint", "step": state.global_step})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close(state.global_step)
        self._write(
            {
                "event": "end",
                "step": state.global_step,
                "elapsed_s": round(time.perf_counter() - self._t0, 2),
                "tokens_per_second": self.tokens_per_second(),
            }
        )

    def close(self, step: int | None = None) -> None:
        """Stop the progress bar (also after an error, when on_train_end never came)."""
        if self._bar is not None:
            self._bar.close(step)
            self._bar = None


class StepBar:
    """The live training bar on stderr: steps, loss, tokens/s and ETA. The launcher draws the same bar
    from rank 0's events."""

    def __init__(self, *, total: int, done: int = 0) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total, completed=done, stats="loss -")

    def update(self, step: int, loss: float | None, rate: float | None) -> None:
        shown = f"{loss:.4f}" if loss is not None else "-"
        stats = f"loss {shown}  {rate:,.0f} tok/s" if rate else f"loss {shown}"
        self._progress.update(self._task, completed=step, stats=stats)

    def close(self, step: int | None = None) -> None:
        if step is not None:
            self._progress.update(self._task, completed=step)
        self._progress.stop()


class RankLog(TrainerCallback):  # type: ignore[misc]
    """Each rank's own log of a launched run (``launch/rank-N.steps.jsonl``): per optimizer step, its
    time, and a fingerprint of every batch this rank collated since the last step (the data loader
    prepares one batch ahead, so a step lists the batches prepared while it ran). It finds the slow
    rank, and shows that the ranks trained on different data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._batches: list[str] = []
        self._tokens = 0
        self._started = 0.0

    def watch(self, collator: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Wrap the data collator: each rank collates the batches of its own shard."""

        def collate(features: Any) -> Any:
            batch = collator(features)
            ids = batch.get("input_ids") if hasattr(batch, "get") else None
            if ids is not None:
                import hashlib

                self._batches.append(hashlib.sha256(ids.cpu().numpy().tobytes()).hexdigest()[:16])
                self._tokens += int(ids.numel())
            return batch

        return collate

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        record = {
            "step": state.global_step,
            "seconds": round(time.perf_counter() - self._started, 4),
            "collated_tokens": self._tokens,
            "collated": self._batches,
        }
        self._batches, self._tokens = [], 0
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
