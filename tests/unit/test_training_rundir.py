"""The run directory's decisions, on hand-made directories: no torch, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bedrock_ft.errors import TrainingError
from bedrock_ft.training._rundir import RunDir, RunMismatchError

INFO = {"run_hash": "abc", "qlora": {"r": 16}, "training": {"max_steps": 6}, "dataset": {"sha256": "x"}}


def _checkpoint(run: RunDir, step: int, *, complete: bool) -> Path:
    path = run.checkpoints / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_an_empty_or_missing_directory_is_fresh(tmp_path: Path) -> None:
    assert RunDir(tmp_path / "new").prepare(overwrite=False, resume=False, run_info=INFO) == "fresh"
    (tmp_path / "empty").mkdir()
    assert RunDir(tmp_path / "empty").prepare(overwrite=False, resume=True, run_info=INFO) == "fresh"


def test_resume_picks_the_last_complete_checkpoint_and_drops_the_torn_one(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_run(INFO)
    _checkpoint(run, 2, complete=True)
    _checkpoint(run, 10, complete=True)
    torn = _checkpoint(run, 12, complete=False)  # killed while saving
    (run.checkpoints / "checkpoint-latest").mkdir()  # not a step: ignored
    assert run.prepare(overwrite=False, resume=True, run_info=INFO) == "resume"
    assert run.last_checkpoint() == (10, run.checkpoints / "checkpoint-10")  # 10 > 2 numerically
    assert run.drop_incomplete_checkpoints() == [torn]
    assert not torn.exists() and (run.checkpoints / "checkpoint-latest").exists()


def test_without_resume_or_overwrite_a_run_is_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_run(INFO)
    _checkpoint(run, 4, complete=True)
    with pytest.raises(TrainingError, match=r"an interrupted run \(last checkpoint: step 4\)"):
        run.prepare(overwrite=False, resume=False, run_info=INFO)
    run.manifest.write_text("{}")
    with pytest.raises(TrainingError, match=r"a finished run .*resume=True returns it"):
        run.prepare(overwrite=False, resume=False, run_info=INFO)
    assert run.prepare(overwrite=False, resume=True, run_info=INFO) == "finished"


def test_overwrite_decides_but_deletes_nothing_until_cleared(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_run(INFO)
    assert run.prepare(overwrite=True, resume=False, run_info=INFO) == "replace"
    assert run.run_file.exists()
    run.clear()
    assert not tmp_path.exists()


def test_a_foreign_directory_is_never_a_run(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="not a bedrock-ft run"):
        RunDir(tmp_path).prepare(overwrite=True, resume=False, run_info=INFO)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(TrainingError, match="exists and is not a directory"):
        RunDir(file).prepare(overwrite=False, resume=False, run_info=INFO)


def test_resume_with_other_settings_names_them(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_run(INFO)
    other = {**INFO, "run_hash": "def", "training": {"max_steps": 8}}
    with pytest.raises(RunMismatchError, match=r"training\.max_steps: 6 -> 8"):
        run.prepare(overwrite=False, resume=True, run_info=other)
