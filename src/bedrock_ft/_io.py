"""Atomic file and directory writes, and checksums.

Interrupted work leaves either the old result or the new one, never half: everything is written
under a temporary name beside its target and moved into place with ``os.replace``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_dir",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "dir_mode",
    "file_mode",
    "remove_stale_temps",
    "sha256_file",
]

TEMP_MARK = ".bedrock-ft-tmp-"


# A previous version moved aside by atomic_dir; never a prefix of TEMP_MARK names, whatever the target's name.
OLD_MARK = ".bedrock-ft-old-"


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (changing it races with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode for files we publish: mkstemp creates 0600, a normal file gets 0666 less the umask."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    return 0o777 & ~_umask()


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Write ``path`` through a binary handle: the file appears, complete and fsynced, only if the
    block succeeds. Raise inside the block (after checking what was written) to keep the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_MARK + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same directory, fsynced, then renamed."""
    with atomic_file(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temp name; it appears at ``target`` only if the block succeeds.

    With ``overwrite``, an existing ``target`` is replaced only after the new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_MARK + target.name + ".", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, dir_mode())
        if target.exists():
            # Directories can't replace a non-empty directory in one rename: move the old one aside
            # first. If the swap fails, or the process dies in between, the old one is put back
            # (here, or by remove_stale_temps on the next run).
            old = Path(tempfile.mkdtemp(prefix=f"{OLD_MARK}{target.name}.", dir=target.parent))
            old.rmdir()
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temps(directory: str | Path) -> int:
    """Clean up after a killed process in ``directory``; returns how many entries were handled.

    Half-written temp files and dirs are deleted. A previous version that ``atomic_dir`` had moved
    aside is restored when nothing took its place, and deleted otherwise.
    Call it only while holding whatever lock serialises writers of ``directory``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    removed = 0
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(OLD_MARK) and entry.is_dir():
            original = directory / entry.name[len(OLD_MARK) :].rsplit(".", 1)[0]
            if not original.exists():
                os.replace(entry, original)
            else:
                shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        elif entry.name.startswith(TEMP_MARK):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


def sha256_file(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
