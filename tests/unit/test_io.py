"""Atomic writes: an interrupted write leaves the old result or the new one, never half."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bedrock_ft import _io


def test_atomic_write_gives_normal_permissions(tmp_path: Path) -> None:
    path = _io.atomic_write_text(tmp_path / "a.txt", "hello")
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == _io.file_mode()
    assert _io.file_mode() == 0o666 & ~_io._umask()


def test_atomic_dir_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), _io.atomic_dir(target) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with _io.atomic_dir(target) as tmp:
        (tmp / "whole").write_text("x")
    assert [p.name for p in target.iterdir()] == ["whole"]
    assert stat.S_IMODE(target.stat().st_mode) == _io.dir_mode()


def test_atomic_dir_refuses_an_existing_target_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(FileExistsError), _io.atomic_dir(target):
        pass
    with _io.atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new").write_text("x")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failed_swap_puts_the_old_directory_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("x")
    real_replace = os.replace
    calls: list[str] = []

    def failing_second_replace(src: str, dst: str) -> None:
        calls.append(str(dst))
        if len(calls) == 2:  # old moved aside; now moving the new one in fails
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "replace", failing_second_replace)
    with pytest.raises(OSError, match="disk full"), _io.atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new").write_text("x")
    monkeypatch.undo()
    assert [p.name for p in target.iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_cleanup_restores_an_old_version_a_killed_swap_left_aside(tmp_path: Path) -> None:
    # What a process killed between the two renames leaves: the old dir aside, the new one in temp.
    aside = tmp_path / f"{_io.OLD_MARK}model.abc123"
    aside.mkdir()
    (aside / "weights").write_text("old")
    (tmp_path / f"{_io.TEMP_MARK}model.xyz789").mkdir()
    (tmp_path / f"{_io.TEMP_MARK}file.tmp").write_text("half")
    assert _io.remove_stale_temps(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (tmp_path / "model" / "weights").read_text() == "old"


def test_cleanup_drops_an_old_version_once_replaced(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / f"{_io.OLD_MARK}model.abc123").mkdir()
    assert _io.remove_stale_temps(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert _io.sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_target_named_old_is_not_mistaken_for_a_moved_aside_version(tmp_path: Path) -> None:
    # What a killed atomic_dir(tmp_path / "old.ckpt") leaves: a half-built temp directory.
    half = tmp_path / f"{_io.TEMP_MARK}old.ckpt.abc123"
    half.mkdir()
    (half / "weights").write_text("half")
    assert _io.remove_stale_temps(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []  # deleted, never published as "ckpt"
