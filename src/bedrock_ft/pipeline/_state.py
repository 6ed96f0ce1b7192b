"""What a run directory remembers: ``run.json`` (one record per stage), fingerprints, and the run lock.

A stage is skipped on a re-run when its record says it completed with the same config hash and the
same input fingerprint, and its output is still what it wrote (same fingerprint). Anything else redoes
it, with the reason; a redone stage changes its output's fingerprint, so every stage after it is redone
too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bedrock_ft._io import atomic_write_text
from bedrock_ft._version import __version__

__all__ = ["RssSampler", "RunState", "StageRecord", "fingerprint", "hash_text", "run_lock"]

StageStatus = Literal["pending", "running", "completed", "skipped", "failed", "interrupted"]


def hash_text(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def fingerprint(location: str | None) -> str | None:
    """What identifies an artifact's content cheaply: its manifest's bytes (a manifest is rewritten
    whenever its stage runs), else the names, sizes and mtimes of a directory's files. None when the
    location does not exist here. An s3:// location is its URI: the stage that reads it checks it."""
    if location is None:
        return None
    if location.startswith("s3://"):
        return hash_text(location)
    path = Path(location)
    if path.is_dir() and (path / "manifest.json").is_file():
        path = path / "manifest.json"
    if path.is_file() and path.suffix == ".json" and path.stat().st_size < 2**24:  # a manifest or result
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if path.is_file():  # a data file, maybe large: its size and modification time
        return hash_text(path.name, str(path.stat().st_size), str(path.stat().st_mtime_ns))
    if path.is_dir():
        entries = sorted(
            f"{p.relative_to(path)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in path.rglob("*")
            if p.is_file()
        )
        return hash_text(*entries) if entries else None
    return None


class StageRecord(BaseModel):
    """One stage of a run, as run.json keeps it."""

    model_config = ConfigDict(extra="ignore")

    status: StageStatus = Field(default="pending", description="What happened to the stage last.")
    config_hash: str | None = Field(default=None, description="Hash of the stage's settings.")
    input_hash: str | None = Field(default=None, description="Fingerprint of what the stage read.")
    output: str | None = Field(default=None, description="Where its artifact is (a manifest or result file).")
    output_hash: str | None = Field(default=None, description="Fingerprint of that artifact when written.")
    started_at: datetime | None = Field(default=None, description="When it last started (UTC).")
    seconds: float | None = Field(default=None, description="How long it took, the last time it ran.")
    peak_rss_mb: float | None = Field(default=None, description="Peak RSS of the process tree while it ran.")
    summary: dict[str, Any] = Field(default_factory=dict, description="Key outputs, for the run's table.")
    reason: str | None = Field(default=None, description="Why it ran (or was skipped) the last time.")
    error: str | None = Field(default=None, description="The error that ended it, when it failed.")


class RunState(BaseModel):
    """``run.json``: the config the run used and one record per stage."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="The run's name.")
    bedrock_ft_version: str = Field(default=__version__, description="Version that last wrote it.")
    status: str = Field(default="running", description="running, completed, failed or interrupted.")
    started_at: datetime | None = Field(default=None, description="When the last run started.")
    seconds: float | None = Field(default=None, description="Wall time of the last run.")
    config: dict[str, Any] = Field(default_factory=dict, description="The pipeline config of the last run.")
    stages: dict[str, StageRecord] = Field(default_factory=dict, description="Each stage's record.")

    @classmethod
    def load(cls, run_dir: Path, name: str) -> RunState:
        path = run_dir / "run.json"
        if not path.is_file():
            return cls(name=name)
        try:
            return cls.model_validate_json(path.read_text("utf-8"))
        except ValueError:  # unreadable: the stages' own outputs still let them resume
            return cls(name=name)

    def save(self, run_dir: Path) -> None:
        atomic_write_text(run_dir / "run.json", self.model_dump_json(indent=2) + "\n")


def now() -> datetime:
    return datetime.now(timezone.utc)


@contextlib.contextmanager
def run_lock(run_dir: Path, say: Any) -> Iterator[None]:
    """One run of a directory at a time: a second one waits for the first (and says so). Where there is
    no fcntl (Windows), runs are not locked."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    with open(run_dir / ".lock", "a+") as fh:  # noqa: PTH123
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another run of {run_dir} is in progress: waiting for it to end")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RssSampler:
    """Peak RSS of this process and its children, sampled every 0.2 s while a stage runs (Linux /proc;
    elsewhere the peak is None)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bedrock-ft-rss", daemon=True)

    def __enter__(self) -> RssSampler:
        if Path("/proc/self/status").exists():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)

    @property
    def peak_mb(self) -> float | None:
        return round(self.peak / 2**20, 1) if self.peak else None

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(0.2)


def _tree_rss(pid: int) -> int:
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo += [int(c) for c in children]
    return total


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 1)
