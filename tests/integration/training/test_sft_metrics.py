"""The trainer's step no longer reads its metrics mid-step; what it logs must be what trl logs.

bedrock-ft's SFTTrainer keeps trl's per-step metrics (entropy, mean_token_accuracy, num_tokens) on the
device and reads them when it logs. The same run with trl's own SFTTrainer must log the same loss and
the same metrics, step by step (with transformers' count of the tokens seen, which ours counts on the
host), and the same FLOP estimate. A first run is discarded: the first
training run in a process on CPU gets a slightly different first gradient than the runs after it (a
pre-existing quirk of the 4-bit CPU path, whichever trainer class runs first), so only runs after it
are comparable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig
from bedrock_ft.artifacts import DatasetArtifact

from .conftest import FAST

pytestmark = pytest.mark.slow

METRICS = ("loss", "entropy", "mean_token_accuracy", "num_tokens", "grad_norm", "num_input_tokens_seen")


def _events(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _logged(run: Path) -> list[dict[str, Any]]:
    logs = [e for e in _events(run) if e.get("event") == "log" and "loss" in e]
    return [{k: e[k] for k in METRICS if k in e} for e in logs]


def _total_flos(run: Path) -> list[float]:
    return [e["total_flos"] for e in _events(run) if "total_flos" in e]


def test_deferred_metrics_log_what_trl_logs(
    qa_dataset: DatasetArtifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from bedrock_ft.training import _sft

    walks: dict[str, int] = {}  # module-tree walks within the steps after the first
    real_walk = torch.nn.Module.named_modules
    counting: list[str] = []

    def counted(module: Any, *args: Any, **kwargs: Any) -> Any:
        if counting and not args:  # a walk's top-level call (its recursion passes arguments)
            walks[counting[0]] = walks.get(counting[0], 0) + 1
        return real_walk(module, *args, **kwargs)

    class Steps(TrainerCallback):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            self.name = name

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step >= 1:
                counting[:] = [self.name]

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            counting.clear()

    monkeypatch.setattr(torch.nn.Module, "named_modules", counted)
    runs = {}
    for name in ("first", "ours", "trl"):
        if name == "trl":
            monkeypatch.setattr(_sft, "sft_trainer_class", lambda: SFTTrainer)
        training = TrainingConfig(output_dir=str(tmp_path / name), max_steps=3, save_steps=99, seed=3, **FAST)
        QLoRATrainer(QLoRAConfig(), training, progress_bar=False, callbacks=[Steps(name)]).train(qa_dataset)
        runs[name] = _logged(tmp_path / name)
    # transformers walks every module each step (FLOP count, clipping, zero_grad); ours doesn't
    assert walks.get("trl", 0) >= 2 * 3 and walks.get("ours", 0) == 0, walks
    ours, theirs = runs["ours"], runs["trl"]
    assert len(ours) == len(theirs) == 3
    for step, (got, want) in enumerate(zip(ours, theirs, strict=True), start=1):
        assert got.keys() == want.keys() == set(METRICS), step
        assert got["num_tokens"] == want["num_tokens"] > 0, step
        # counted on the host by ours, gathered on the device and read back by transformers'
        assert got["num_input_tokens_seen"] == want["num_input_tokens_seen"] > 0, step
        for key in ("loss", "entropy", "mean_token_accuracy", "grad_norm"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), (step, key)
    assert ours[0]["entropy"] > 0 and 0 <= ours[0]["mean_token_accuracy"] <= 1
    assert ours[-1]["num_tokens"] > ours[0]["num_tokens"]  # the running count of training tokens
    # the FLOP estimate, with the parameters counted once instead of every step, is transformers' own
    assert _total_flos(tmp_path / "ours") == _total_flos(tmp_path / "trl") != []
    assert _total_flos(tmp_path / "ours")[0] > 0


@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, and left alone
def test_clip_grads_is_torchs_clipping_bit_for_bit(max_norm: float) -> None:
    """The trainer clips a CUDA adapter's gradients with clip_grads; torch's own (foreach) is the truth."""
    import torch

    from bedrock_ft.training._sft import clip_grads

    gen = torch.Generator().manual_seed(0)
    shapes = [(16, 64), (64, 16), (8, 32), (32, 8)] * 3
    grads = [torch.randn(shape, generator=gen) for shape in shapes]
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    want = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    got = clip_grads(grads, max_norm)
    assert torch.equal(got, want)
    for p, g in zip(params, grads, strict=True):
        assert torch.equal(g, p.grad)
    assert (float(want) > max_norm) == (max_norm == 0.5)
