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
from pathlib import Path
from typing import Any

from transformers import TrainerCallback  # noqa: TID253 - imported only by the trainer, when training

__all__ = ["TrainingMonitor"]


class TrainingMonitor(TrainerCallback):  # type: ignore[misc]
    """Times every optimizer step and counts its tokens; logs to ``metrics_file`` and a progress bar."""

    def __init__(self, metrics_file: Path, *, progress_bar: bool = True, cuda: bool = False) -> None:
        self.metrics_file = metrics_file
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
        self._progress: Any = None
        self._task: Any = None
        self._last_loss: float | None = None

    # --- helpers -----------------------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        with self.metrics_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def tokens_per_second(self, skip: int = 2) -> float | None:
        """Median step throughput over the steps after the first ``skip`` (warm-up)."""
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
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=state.max_steps, completed=state.global_step, stats="loss -"
            )

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._sync()
        seconds = time.perf_counter() - self._step_started
        seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        tokens, self._tokens_before = seen - self._tokens_before, seen
        self.step_seconds.append(seconds)
        self.step_tokens.append(tokens)
        self._window.append((seconds, tokens))
        if self._progress is not None:
            rate = sum(t for _, t in self._window[-20:]) / max(sum(s for s, _ in self._window[-20:]), 1e-9)
            loss = f"{self._last_loss:.4f}" if self._last_loss is not None else "-"
            self._progress.update(
                self._task, completed=state.global_step, stats=f"loss {loss}  {rate:,.0f} tok/s"
            )

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        logs = dict(logs or {})
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

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write({"event": "checkpoint", "step": state.global_step})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)
            self._progress.stop()
            self._progress = None
        self._write(
            {
                "event": "end",
                "step": state.global_step,
                "elapsed_s": round(time.perf_counter() - self._t0, 2),
                "tokens_per_second": self.tokens_per_second(),
            }
        )

    def close(self) -> None:
        """Stop the progress bar (after an error, when on_train_end never came)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
