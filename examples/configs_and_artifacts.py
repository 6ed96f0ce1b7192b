"""Typed configs from files, errors that list every problem, and artifacts as manifests.

python examples/configs_and_artifacts.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field

from bedrock_ft import ConfigError, DatasetArtifact, load_artifact
from bedrock_ft.config import BaseConfig


class TrainSettings(BaseConfig):
    """A stage config is a BaseConfig: every field typed, defaulted and described."""

    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate.")
    max_steps: int = Field(default=100, ge=1, description="Optimizer steps.")


class RunConfig(BaseConfig):
    name: str = Field(default="demo", description="Run name.")
    training: TrainSettings = Field(default_factory=TrainSettings, description="Training settings.")


def main() -> None:
    work = Path(tempfile.mkdtemp())

    good = work / "run.yaml"
    good.write_text("name: flan\ntraining:\n  learning_rate: 0.0001\n")
    cfg = RunConfig.from_file(good)
    print(f"loaded: {cfg.name} lr={cfg.training.learning_rate} hash={cfg.config_hash()}")

    bad = work / "bad.yaml"
    bad.write_text("name: flan\ntraining:\n  learning_rate: fast\n  max_step: 10\n")
    try:
        RunConfig.from_file(bad)
    except ConfigError as err:
        print(err)

    out = work / "dataset"
    artifact = DatasetArtifact(
        train_uri=str(out / "train_dataset.json"),
        test_uri=str(out / "test_dataset.json"),
        format="openorca",
        record_counts={"train": 3, "test": 1},
        config_hash=cfg.config_hash(),
    )
    manifest = artifact.write(out)
    print(f"wrote {manifest}:\n{manifest.read_text()}")
    again = load_artifact(out)
    print(f"read back a {type(again).__name__}, equal: {again == artifact}")


if __name__ == "__main__":
    main()
