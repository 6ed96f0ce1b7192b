"""Fixtures for training tests: a small chat dataset built with DatasetBuilder, and fast run settings.

Every run here trains the small random Llama (``train_model_dir``): the same code paths as the embedded
model, about ten times faster. That the embedded model learns is the quickstart's test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.artifacts import DatasetArtifact

# Small and quick on two CPU cores (a fraction of a second a step on the small model), with a learning
# rate high enough that the loss falls within a handful of steps.
FAST: dict[str, Any] = {
    "max_length": 128,
    "per_device_batch_size": 4,
    "learning_rate": 1e-2,
    "warmup_ratio": 0.0,
    "lr_scheduler": "constant",
    "logging_steps": 1,
    "tensorboard": False,
}


@pytest.fixture(scope="session")
def qa_dataset(embedded_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DatasetArtifact:
    """40 synthetic QA records (32 train), templated with the embedded model's own chat template."""
    from bedrock_ft.data import build_synthetic_dataset

    out = tmp_path_factory.mktemp("qa-dataset")
    return build_synthetic_dataset(out, n=40, seed=0, tokenizer=str(embedded_dir), overwrite=True)


@pytest.fixture(scope="session", autouse=True)
def _train_the_small_model(train_model_dir: Path) -> Iterator[None]:
    """FAST names the small model as the base (session-wide, before any module's runs start)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(FAST, "base_model", str(train_model_dir))
        yield
