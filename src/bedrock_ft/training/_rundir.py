"""The run directory: what a training run leaves behind, and how a new run treats it.

::

    output_dir/
      run.json           configs and dataset of the run (written first; marks a bedrock-ft run)
      checkpoints/       checkpoint-N/ every save_steps, the newest save_total_limit kept
      metrics.jsonl      one JSON object per event (see progress.py)
      tensorboard/       when TensorBoard logging is on
      adapter/           the trained adapter, tokenizer and chat template (written atomically)
      manifest.json      the AdapterArtifact (written last: its presence means the run finished)

A checkpoint is complete once ``trainer_state.json`` is in it: the Trainer writes that file last.
A run killed while saving leaves an incomplete one, which resume skips and removes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bedrock_ft._io import atomic_write_text
from bedrock_ft.artifacts import MANIFEST_NAME
from bedrock_ft.errors import TrainingError

__all__ = ["RunDir", "RunMismatchError"]

RUN_FILE = "run.json"


class RunMismatchError(TrainingError):
    """resume=True found a run started with other settings or data."""


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.checkpoints = self.path / "checkpoints"
        self.adapter = self.path / "adapter"
        self.metrics = self.path / "metrics.jsonl"
        self.tensorboard = self.path / "tensorboard"
        self.manifest = self.path / MANIFEST_NAME
        self.run_file = self.path / RUN_FILE

    # --- state ---------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.manifest.is_file()

    @property
    def is_run(self) -> bool:
        return self.run_file.is_file()

    def _checkpoint_dirs(self) -> list[tuple[int, Path]]:
        if not self.checkpoints.is_dir():
            return []
        return sorted((step, c) for c in self.checkpoints.iterdir() if (step := _step(c)) is not None)

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        return [(step, path) for step, path in self._checkpoint_dirs() if _complete(path)]

    def last_checkpoint(self) -> tuple[int, Path] | None:
        complete = self.complete_checkpoints()
        return complete[-1] if complete else None

    def drop_incomplete_checkpoints(self) -> list[Path]:
        dropped = [path for _, path in self._checkpoint_dirs() if not _complete(path)]
        for path in dropped:
            shutil.rmtree(path)
        return dropped

    # --- decisions -----------------------------------------------------------------------------------

    def prepare(self, *, overwrite: bool, resume: bool, run_info: dict[str, Any]) -> str:
        """Decide what to do with what is there: 'fresh', 'replace' (overwrite a previous run),
        'resume' or 'finished'. Refuses to clobber; deletes nothing."""
        if not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir())):
            return "fresh"
        if not self.path.is_dir():
            raise TrainingError(f"output_dir {self.path}: exists and is not a directory")
        if not self.is_run:
            raise TrainingError(
                f"output_dir {self.path}: not empty, and not a bedrock-ft run (no {RUN_FILE}); choose "
                "another output_dir (overwrite only replaces directories bedrock-ft made)"
            )
        if overwrite:
            return "replace"  # deleted by clear(), once every check before loading has passed
        last = self.last_checkpoint()
        if not resume:
            what = (
                "a finished run (manifest.json)"
                if self.finished
                else (
                    f"an interrupted run (last checkpoint: step {last[0]})" if last else "an interrupted run"
                )
            )
            advice = "resume=True returns it" if self.finished else "resume=True continues it"
            raise TrainingError(
                f"output_dir {self.path}: holds {what}; {advice}, overwrite=True starts over "
                "(deleting it), or choose another output_dir"
            )
        self.check_same_run(run_info)
        return "finished" if self.finished else "resume"

    def clear(self) -> None:
        """Delete a previous run (``overwrite``): only a directory bedrock-ft made (prepare checked)."""
        if self.path.exists():
            shutil.rmtree(self.path)

    def check_same_run(self, run_info: dict[str, Any]) -> None:
        previous = self.read_run()
        if previous.get("run_hash") == run_info["run_hash"]:
            return
        raise RunMismatchError(
            f"output_dir {self.path}: resume=True, but the run there was started with other settings or "
            f"data ({_differences(previous, run_info)}); resume with the same configs, or set overwrite=True"
        )

    # --- files ---------------------------------------------------------------------------------------

    def read_run(self) -> dict[str, Any]:
        try:
            data = json.loads(self.run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainingError(f"{self.run_file}: can't read it: {exc}") from None
        return data if isinstance(data, dict) else {}

    def write_run(self, data: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_file, json.dumps(data, indent=2, default=str) + "\n")


def _differences(previous: dict[str, Any], current: dict[str, Any]) -> str:
    """``training.max_steps: 6 -> 8, dataset: ...``: the hash-relevant settings that changed."""
    changed = []
    for section in ("qlora", "training", "dataset"):
        old, new = previous.get(section), current.get(section)
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    changed.append(f"{section}.{key}: {old.get(key)!r} -> {new.get(key)!r}")
        elif old != new:
            changed.append(f"{section}: {old!r} -> {new!r}")
    return ", ".join(changed[:5]) or "its run hash differs"


def _step(path: Path) -> int | None:
    name = path.name
    if not path.is_dir() or not name.startswith("checkpoint-"):
        return None
    suffix = name[len("checkpoint-") :]
    return int(suffix) if suffix.isdigit() else None


def _complete(path: Path) -> bool:
    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(path.glob("adapter_model.*"))
