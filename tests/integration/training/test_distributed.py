"""backend='accelerate' on CPU: two real ranks (DDP over gloo) started with `accelerate launch`.

Each test launches real processes; the small random Llama keeps each launch to seconds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from bedrock_ft import AdapterMerger, MergeConfig, QLoRAConfig, QLoRATrainer, TrainingConfig, TrainingError
from bedrock_ft.artifacts import DatasetArtifact

from .conftest import FAST

pytestmark = pytest.mark.slow


def ddp(**settings: Any) -> TrainingConfig:
    """Two CPU ranks on the small model (FAST names it once the session starts: read it at call time)."""
    return TrainingConfig(**{**FAST, "backend": "accelerate", "num_processes": 2, "per_device_batch_size": 2,
                             **settings})  # fmt: skip


SCRIPT = """
import sys
from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig
training = TrainingConfig.from_file(sys.argv[1])
QLoRATrainer(QLoRAConfig(), training, progress_bar=False).train(sys.argv[2])
"""


def _processes_of(run: Path, *, ranks_only: bool = False) -> list[psutil.Process]:
    """Every live process of the launch of the run in ``run``: the launcher and its ranks."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if "bedrock_ft.training.entrypoint" in cmdline and str(run / "launch" / "train.json") in cmdline:
                if ranks_only and "accelerate.commands.launch" in cmdline:
                    continue
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait_gone(run: Path, seconds: float = 30) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := _processes_of(run)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _wait_for(path: Path, proc: Any = None, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc is None or proc.poll() is None, "the run ended before " + path.name
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ddp_run(qa_dataset: DatasetArtifact, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("ddp") / "run"
    said: list[str] = []
    training = ddp(output_dir=str(out), max_steps=6, save_steps=3)
    return QLoRATrainer(QLoRAConfig(), training, progress=said.append, progress_bar=False).train(
        qa_dataset
    ), said


def test_two_ranks_train_on_different_data_and_the_loss_falls(ddp_run: Any) -> None:
    adapter, said = ddp_run
    run = Path(adapter.adapter_dir).parent
    metrics = adapter.train_metrics
    assert (metrics.world_size, metrics.strategy, metrics.global_step) == (2, "ddp", 6)
    assert metrics.final_loss < metrics.first_loss
    seen = {}
    for rank in (0, 1):
        steps = [
            json.loads(line)
            for line in (run / "launch" / f"rank-{rank}.steps.jsonl").read_text().splitlines()
        ]
        assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]
        seen[rank] = {b for s in steps for b in s["collated"]}
    assert seen[0] and seen[1]
    assert not seen[0] & seen[1]  # no batch trained on by both ranks
    # rank 0 alone reports: one metrics.jsonl story, and its messages reached this process
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("start") == 1
    assert any(m.startswith("launching DDP on 2 CPU processes") for m in said)
    assert "training" in said  # rank 0's own progress line, sent to the launcher


def test_the_adapter_merges_and_loads(ddp_run: Any, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter, _ = ddp_run
    base = AutoModelForCausalLM.from_pretrained(adapter.base_model, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, adapter.adapter_dir)
    lora_b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert lora_b and all(bool(p.abs().sum() > 0) for p in lora_b)  # trained: lora_B starts at zero
    merged = AdapterMerger(MergeConfig(output_dir=str(tmp_path / "merged"))).merge(adapter)
    logits = merged.merge.verification.logits
    assert logits.max_rel <= logits.tolerance


def test_ctrl_c_stops_every_rank_and_a_resume_with_the_same_world_size_finishes(
    qa_dataset: DatasetArtifact, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    training = ddp(output_dir=str(run), max_steps=20, save_steps=2)
    config = training.to_file(tmp_path / "training.yaml")
    dataset_dir = str(Path(qa_dataset.train_uri).parent)
    log = (tmp_path / "parent.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(config), dataset_dir], stderr=log, stdout=log)
    try:
        _wait_for(run / "checkpoints" / "checkpoint-2" / "trainer_state.json", proc)
        assert len(_processes_of(run, ranks_only=True)) == 2
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode != 0
    assert _wait_gone(run) == []  # no rank outlives an interrupted launcher
    assert not (run / "manifest.json").exists()

    # A resume with one process would restore neither the ranks' data positions nor their RNG states.
    with pytest.raises(TrainingError, match=r"trained with 2 process\(es\) and would resume with 1"):
        QLoRATrainer(QLoRAConfig(), training.replace(resume=True, backend="local", num_processes=None)).train(
            qa_dataset
        )
    resumed = QLoRATrainer(QLoRAConfig(), training.replace(resume=True), progress_bar=False)
    adapter = resumed.train(qa_dataset)
    assert adapter.train_metrics.global_step == 20
    starts = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    starts = [e for e in starts if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed"] and starts[1]["step"] >= 2


def test_a_killed_rank_stops_the_run_with_its_exit(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    run = tmp_path / "run"
    training = ddp(output_dir=str(run), max_steps=200, save_steps=100)
    failure: list[BaseException] = []

    def train() -> None:
        try:
            QLoRATrainer(QLoRAConfig(), training, progress_bar=False).train(qa_dataset)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=train)
    thread.start()
    _wait_for(run / "launch" / "rank-1.steps.jsonl")
    victim = next(p for p in _processes_of(run, ranks_only=True) if p.environ().get("RANK") == "1")
    victim.kill()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert failure and isinstance(failure[0], TrainingError)
    assert "rank 1 of 2 died with signal SIGKILL" in str(failure[0])
    assert _wait_gone(run) == []


def test_a_failing_rank_reports_its_error_and_traceback(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    # flash-attention can't load on CPU: the launcher's checks pass, the ranks fail as they load the model.
    training = ddp(output_dir=str(tmp_path / "run"), max_steps=2, attn_implementation="flash_attention_2")
    with pytest.raises(TrainingError, match=r"rank \d of 2 failed: base_model .*can't load it") as caught:
        QLoRATrainer(QLoRAConfig(), training, progress_bar=False).train(qa_dataset)
    assert "Traceback" in caught.value.rank_traceback  # type: ignore[attr-defined]
    assert "flash" in caught.value.rank_traceback.lower()  # type: ignore[attr-defined]
    assert _wait_gone(tmp_path / "run") == []


def test_an_in_memory_dataset_reaches_the_ranks(tmp_path: Path) -> None:
    from datasets import Dataset

    rows = [{"messages": [{"role": "user", "content": f"q{i}?"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(24)]  # fmt: skip
    training = ddp(output_dir=str(tmp_path / "run"), max_steps=2)
    adapter = QLoRATrainer(QLoRAConfig(), training, progress_bar=False).train(Dataset.from_list(rows))
    assert adapter.train_metrics.global_step == 2
    assert (tmp_path / "run" / "launch" / "hf-dataset" / "state.json").is_file()
