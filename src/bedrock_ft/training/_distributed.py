"""The rank side of a launched run: who this process is, and what it reports back to the launcher.

A run with ``backend='accelerate'`` is started by :mod:`bedrock_ft.training._launch`, which sets
``BEDROCK_FT_LAUNCH_DIR`` for every rank; ``torchrun`` (under ``accelerate launch``) sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``. Rank 0 sends its progress to the launcher as event lines on its
standard output; every other rank writes its output to ``launch/rank-N.log``. A rank that fails
writes ``launch/error-rank-N.json`` (its exception and traceback) before it exits, which the launcher
turns into the error the user sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bedrock_ft._io import atomic_write_text
from bedrock_ft.errors import TrainingError

__all__ = [
    "EVENT_PREFIX",
    "LAUNCH_ENV",
    "RankInfo",
    "accept_indexed_cpu",
    "emit_event",
    "launched_rank",
    "redirect_output",
    "watch_launcher",
    "write_rank_error",
]

PARENT_ENV = "BEDROCK_FT_LAUNCHED_BY"  # the pid of the process that launched the run

LAUNCH_ENV = "BEDROCK_FT_LAUNCH_DIR"
EVENT_PREFIX = "\x1ebedrock-ft-event "  # a record separator no ordinary log line starts with


@dataclass(frozen=True)
class RankInfo:
    """This process's place in a launched run."""

    rank: int
    local_rank: int
    world_size: int
    launch_dir: Path
    fsdp: bool = False  # accelerate launched it with FSDP (ACCELERATE_USE_FSDP)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_rank() -> RankInfo | None:
    """This process's rank when the bedrock-ft launcher started it, else None.

    Ranks started some other way (a ``torchrun`` or ``accelerate launch`` of the user's own) are
    refused: the launcher prepares the run directory once, before any rank starts.
    """
    launch_dir = os.environ.get(LAUNCH_ENV)
    world = os.environ.get("WORLD_SIZE")
    if not launch_dir:
        if world and world.isdigit() and int(world) > 1:
            raise TrainingError(
                f"this process is one of {world} ranks started outside bedrock-ft; set "
                "training.backend='accelerate' and run `python -m bedrock_ft.training.entrypoint CONFIG` (or "
                "QLoRATrainer.train) once: it starts the ranks itself"
            )
        return None
    try:
        # One process on one device runs without torchrun (accelerate's simple launcher): rank 0 of 1.
        return RankInfo(
            rank=int(os.environ.get("RANK", "0")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            launch_dir=Path(launch_dir),
            fsdp=os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true"),
        )
    except ValueError:
        raise TrainingError(
            f"{LAUNCH_ENV} is set but RANK/LOCAL_RANK/WORLD_SIZE are not numbers: this process was not "
            "started by the bedrock-ft launcher"
        ) from None


def emit_event(event: dict[str, Any]) -> None:
    """Send one event to the launcher (rank 0 only): a line on standard output it reads and draws."""
    sys.stdout.write(EVENT_PREFIX + json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def redirect_output(rank: RankInfo) -> None:
    """Send a rank's standard output and error to ``launch/rank-N.log`` (every rank but 0), so the
    console shows one rank's output, not N copies of it."""
    if rank.is_main:
        return
    log = rank.launch_dir / f"rank-{rank.rank}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def write_rank_error(rank: RankInfo, exc: BaseException) -> None:
    """Record why this rank failed, for the launcher (written atomically, before the process exits)."""
    record = {
        "rank": rank.rank,
        "type": type(exc).__name__,
        "training_error": isinstance(exc, TrainingError),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "time": time.time(),
    }
    with contextlib.suppress(OSError):  # the traceback still reaches the rank's own output
        atomic_write_text(rank.launch_dir / f"error-rank-{rank.rank}.json", json.dumps(record, indent=2))


def accept_indexed_cpu() -> None:
    """Let ``torch.load`` map onto ``cpu:N``. On CPU ranks accelerate's device is ``cpu:0``, which the
    Trainer passes as ``map_location`` when it resumes the optimizer, and which torch's loader doesn't
    know (it knows ``cpu``): without this, a multi-process CPU run can't resume."""
    import torch.serialization

    def tag(obj: Any) -> None:
        return None  # saving is left to torch's own taggers

    def restore(obj: Any, location: str) -> Any:
        return obj if location.startswith("cpu:") else None

    torch.serialization.register_package(5, tag, restore)


def watch_launcher(pid: int, *, interval: float = 2.0) -> None:
    """Exit this rank if the process that launched the run is gone (killed, even with SIGKILL): the
    agent then stops the other ranks, so no rank outlives the user's process."""

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(143)
            except PermissionError:
                pass  # alive, someone else's (a reused pid is not ours to judge)

    threading.Thread(target=watch, name="bedrock-ft-launcher-watch", daemon=True).start()
