"""Every example runs, offline, and prints what its docstring promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "embedded_model.py": ["A: The capital of France is Paris."],
    "register_architecture.py": [
        "before: unknown architecture 'gpt_neox'",
        "after: gpt_neox targets query_key_value",
        "neox-context",
        "refused: architecture 'gpt_neox' is already registered",
        "llama3-rope-override",
    ],
    "configs_and_artifacts.py": [
        "loaded: flan lr=0.0001",
        "training.learning_rate",
        "training.max_step: unknown key; did you mean 'max_steps'?",
        "read back a DatasetArtifact, equal: True",
    ],
    "aws_clients.py": [
        "objects: ['hello.txt']",
        "translated: ResourceNotFoundError (service code NoSuchKey)",
    ],
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, embedded_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for text in EXPECTED[name]:
        assert text in proc.stdout, f"{text!r} not in output of {name}:\n{proc.stdout}"
