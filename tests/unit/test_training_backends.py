"""backend='accelerate' settings, the accelerate config the launcher writes, and who a process is:
light, no torch (the launcher's planning with torch is in tests/integration/training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bedrock_ft import ConfigError, QLoRAConfig, TrainingConfig, TrainingError
from bedrock_ft.architectures import Architecture, get_architecture, list_architectures, register_architecture
from bedrock_ft.errors import RegistryError
from bedrock_ft.training._distributed import LAUNCH_ENV, launched_rank
from bedrock_ft.training._launch import LaunchPlan, accelerate_config
from bedrock_ft.training._memory import estimate_memory

from .test_training_config import MISTRAL_7B


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"strategy": "fsdp"}, "strategy='fsdp'"), ({"num_processes": 4}, "num_processes=4")],
)
def test_multi_process_settings_need_the_accelerate_backend(settings: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"{field} needs backend='accelerate'"):
        TrainingConfig(**settings)  # type: ignore[arg-type]


def test_global_batch_size_sets_the_accumulation_per_world_size() -> None:
    t = TrainingConfig(backend="accelerate", per_device_batch_size=2, global_batch_size=16)
    assert (t.accumulation_for(1), t.accumulation_for(2), t.accumulation_for(4)) == (8, 4, 2)
    with pytest.raises(
        TrainingError, match=r"global_batch_size 16 doesn't divide across 3 rank\(s\).*multiple of 6"
    ):
        t.accumulation_for(3)
    assert TrainingConfig(gradient_accumulation_steps=3).accumulation_for(4) == 3  # as set


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"global_batch_size": 10, "per_device_batch_size": 4}, "not a multiple of per_device_batch_size 4"),
        (
            {"global_batch_size": 8, "gradient_accumulation_steps": 2},
            "global_batch_size or gradient_accumulation",
        ),
    ],
)
def test_global_batch_size_that_cant_work_is_refused(settings: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainingConfig(**settings)


def _plan(strategy: str, world: int, device: str = "cuda", precision: str = "bfloat16") -> LaunchPlan:
    return LaunchPlan(device, world, strategy, precision, QLoRAConfig(), None)


def test_the_fsdp_config_shards_the_registered_layers_and_saves_sharded() -> None:
    config = accelerate_config(_plan("fsdp", 4), layers=["MistralDecoderLayer"], port=29501)
    assert (config["distributed_type"], config["num_processes"], config["mixed_precision"]) == (
        "FSDP",
        4,
        "bf16",
    )
    fsdp = config["fsdp_config"]
    assert fsdp["fsdp_version"] == 1  # FSDP2 doesn't shard bitsandbytes 4-bit weights (docs/training.md)
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "MistralDecoderLayer"
    assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert fsdp["fsdp_cpu_ram_efficient_loading"] and fsdp["fsdp_sync_module_states"]
    assert config["main_process_port"] == 29501


def test_ddp_config_on_cpu_and_one_process() -> None:
    cpu = accelerate_config(_plan("ddp", 2, device="cpu", precision="float32"), layers=[], port=1)
    assert (cpu["distributed_type"], cpu["mixed_precision"], cpu["use_cpu"]) == ("MULTI_GPU", "no", False)
    assert "fsdp_config" not in cpu
    assert accelerate_config(_plan("ddp", 1), layers=[], port=1)["distributed_type"] == "NO"


def test_fsdp_memory_is_shared_across_the_gpus() -> None:
    q, t = QLoRAConfig(), TrainingConfig(per_device_batch_size=4, max_length=2048)
    one = estimate_memory(MISTRAL_7B, q, t, "bfloat16")
    four = estimate_memory(MISTRAL_7B, q, t, "bfloat16", shards=4)
    assert one is not None and four is not None
    assert four.weights == one.weights // 4 and four.adapter == one.adapter // 4
    assert four.activations == one.activations  # each rank still runs its own batch
    assert 0 < four.gathered < one.weights / 8  # one layer, gathered whole while it runs
    assert four.total < one.total


def test_every_registered_decoder_names_its_layer_class() -> None:
    for name in list_architectures():
        arch = get_architecture(name)
        if not arch.encoder_decoder and not arch.multimodal:
            assert arch.decoder_layers, name


def test_decoder_layers_must_be_class_names() -> None:
    bad = Architecture(name="weird", model_types=("weird",), hf_architectures=("WeirdForCausalLM",),
                       decoder_layers=("not a class",))  # fmt: skip
    with pytest.raises(RegistryError, match="decoder_layers must be a tuple of class names"):
        register_architecture(bad)


def test_ranks_started_outside_the_launcher_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LAUNCH_ENV, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        TrainingError, match=r"one of 2 ranks started outside bedrock-ft.*backend='accelerate'"
    ):
        launched_rank()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launched_rank() is None


def test_a_launched_rank_knows_its_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(LAUNCH_ENV, str(tmp_path))
    for key, value in {
        "RANK": "3",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "4",
        "ACCELERATE_USE_FSDP": "true",
    }.items():
        monkeypatch.setenv(key, value)
    rank = launched_rank()
    assert rank is not None
    assert (rank.rank, rank.local_rank, rank.world_size, rank.fsdp, rank.is_main) == (3, 1, 4, True, False)
