"""Which layers recompute their activations, and a step that doesn't wait on its loss mid-step.

``uncheckpointed_layers`` takes the last layers out of gradient checkpointing once transformers has
turned it on for all of them; the math is the same, so the adapter must come out the same. And the
trainer no longer filters each step's loss for nan/inf (a Python bool of a device tensor, which made
the CPU wait for the backward): a diverged loss is logged as nan, not averaged away.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig
from bedrock_ft.artifacts import DatasetArtifact

from .conftest import FAST

pytestmark = pytest.mark.slow


def _checkpointed(model: Any) -> list[bool]:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m.gradient_checkpointing for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def test_kept_layers_skip_the_recomputation_and_train_the_same(
    qa_dataset: DatasetArtifact, tmp_path: Path
) -> None:
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    flags: dict[str, list[bool]] = {}

    class Flags(TrainerCallback):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            self.name = name

        def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            flags[self.name] = _checkpointed(model)

    said: dict[str, list[str]] = {}
    weights = {}
    # a first run is discarded: the first run in a process gets a slightly different first gradient on
    # CPU (see test_sft_metrics.py)
    for name, kept in (("first", 0), ("every layer", 0), ("last kept", 1)):
        said[name] = []
        training = TrainingConfig(output_dir=str(tmp_path / name.replace(" ", "-")), max_steps=2,
                                  save_steps=99, seed=3, uncheckpointed_layers=kept, **FAST)  # fmt: skip
        adapter = QLoRATrainer(QLoRAConfig(), training, progress=said[name].append, progress_bar=False,
                               callbacks=[Flags(name)]).train(qa_dataset)  # fmt: skip
        weights[name] = load_file(str(Path(adapter.adapter_dir) / "adapter_model.safetensors"))
    assert flags["every layer"] == [True, True]
    assert flags["last kept"] == [True, False]  # the 2-layer model's last layer keeps its activations
    assert any(
        "the last layer keeps its activations (uncheckpointed_layers=1)" in m for m in said["last kept"]
    )
    assert not any("keep" in m and "activations" in m for m in said["every layer"])
    a, b = weights["every layer"], weights["last kept"]
    assert a.keys() == b.keys() and a
    import torch

    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-7, msg=key)


def test_a_diverged_loss_is_logged_as_nan(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    """transformers' filter (on by default) would log the average of the finite losses instead."""
    import torch
    from transformers import TrainerCallback

    class Poison(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if state.global_step == 2:
                with torch.no_grad():
                    for name, param in model.named_parameters():
                        if "lora_B" in name:
                            param.fill_(float("nan"))

    training = TrainingConfig(output_dir=str(tmp_path / "run"), max_steps=4, save_steps=99, **FAST)
    QLoRATrainer(QLoRAConfig(), training, progress_bar=False, callbacks=[Poison()]).train(qa_dataset)
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {e["step"]: e["loss"] for e in events if e.get("event") == "log" and "loss" in e}
    assert math.isfinite(losses[1]) and math.isfinite(losses[2]), losses
    assert math.isnan(losses[3]) and math.isnan(losses[4]), losses
