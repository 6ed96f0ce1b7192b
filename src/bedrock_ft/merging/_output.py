"""The merge's output: a directory that is writable, has room, takes one merge at a time, is cleaned of
what a killed merge left, and is recognised (and checked intact) for reuse; and the bytes written."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bedrock_ft._io import OLD_MARK, TEMP_MARK, sha256_file
from bedrock_ft.artifacts import ModelArtifact
from bedrock_ft.errors import MergeError
from bedrock_ft.merging._checkpoint import DTYPE_BYTES, Stored
from bedrock_ft.progress import OnBytes

if TYPE_CHECKING:
    from bedrock_ft.merging._adapter import AdapterInput
    from bedrock_ft.merging._config import MergeConfig

__all__ = [
    "check_disk",
    "check_writable",
    "count_into",
    "intact",
    "lock_parent",
    "merge_identity",
    "output_bytes",
    "remove_leftovers",
]

GiB = 1 << 30


def merge_identity(cfg: MergeConfig, weights_file: Path, src: AdapterInput, base_dir: Path) -> str:
    """What decides the merged bytes: the settings, the adapter's content, and the base."""

    def listing(directory: Path) -> list[tuple[str, int, int]]:  # a file rewritten in place changes mtime
        return sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir() if p.is_file()
        )

    parts = {
        "config": cfg.config_hash(),
        "adapter": sha256_file(weights_file),
        "adapter_files": listing(src.adapter_dir),  # its tokenizer and chat template too
        "chat_template": src.chat_template,
        "base": str(base_dir),
        "base_files": listing(base_dir),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def intact(artifact: ModelArtifact) -> bool:
    """Every file the manifest lists is there, with its size (a cheap check; sha256 would read it all)."""
    root = Path(artifact.model_dir)
    return all((root / f.path).is_file() and (root / f.path).stat().st_size == f.size for f in artifact.files)


def check_writable(parent: Path) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MergeError(f"output_dir's parent {parent} can't be created ({exc.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MergeError(f"output_dir's parent {parent} is not writable; choose another output_dir")


def check_disk(parent: Path, need: int | None) -> None:
    if need is None:
        return
    free = shutil.disk_usage(parent).free
    if need * 1.02 + (64 << 20) > free:
        raise MergeError(
            f"the merged model needs ~{need / GiB:.2f} GiB but {parent} has {free / GiB:.2f} GiB free; "
            "free space or choose another output_dir"
        )


@contextlib.contextmanager
def lock_parent(parent: Path) -> Iterator[None]:
    """One merge at a time per output parent: the next waits (a lock on the directory itself, no file)."""
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_leftovers(out: Path) -> None:
    """What a killed merge into ``out`` left: its temp dir (deleted), a moved-aside old merge (restored
    when nothing replaced it)."""

    def owner(name: str, mark: str) -> str | None:  # "<mark><target>.<random, no dots>" -> target
        return name[len(mark) :].rsplit(".", 1)[0] if name.startswith(mark) else None

    for entry in out.parent.iterdir():
        if owner(entry.name, TEMP_MARK) == out.name:
            shutil.rmtree(entry, ignore_errors=True)
        elif owner(entry.name, OLD_MARK) == out.name:
            if out.exists():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                os.replace(entry, out)


def output_bytes(base: dict[str, Stored] | None, dtype: str) -> int | None:
    """The merged checkpoint's size (floats in the export dtype), when the base's headers are known."""
    if base is None:
        return None
    from bedrock_ft.merging._streaming import out_dtype_code

    size = DTYPE_BYTES[out_dtype_code(dtype)]
    return sum(
        s.numel * (size if s.info.dtype in ("F64", "F32", "F16", "BF16") else 0) for s in base.values()
    )


def count_into(on_bytes: OnBytes | None) -> Callable[[int], None] | None:
    """The writers' byte counter, fed to a byte bar."""
    return None if on_bytes is None else (lambda n: on_bytes("merge", n))
