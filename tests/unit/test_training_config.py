"""QLoRAConfig, TrainingConfig, the train config file and the memory estimate: light, no torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bedrock_ft import ConfigError, QLoRAConfig, TrainingConfig
from bedrock_ft.config import load_stage_file
from bedrock_ft.training import TRAIN_LAYOUT
from bedrock_ft.training._memory import GiB, estimate_memory, kept_layers

MISTRAL_7B = {
    "model_type": "mistral", "vocab_size": 32768, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "max_position_embeddings": 32768, "tie_word_embeddings": False,
}  # fmt: skip


def test_seed_recipe_is_the_seed_exactly() -> None:
    seed = QLoRAConfig.seed_recipe()
    assert (seed.r, seed.alpha, seed.dropout, seed.target_modules) == (16, 8.0, 0.05, "all-linear")
    assert (seed.quant_type, seed.double_quant, seed.compute_dtype, seed.storage_dtype) == (
        "nf4", True, "bfloat16", "bfloat16",
    )  # fmt: skip
    run = TrainingConfig.seed_recipe()
    assert run.attn_implementation == "sdpa"
    assert (run.liger_kernel, run.padding_free, run.packing_strategy) == (False, False, "wrapped")
    assert QLoRAConfig.seed_recipe(r=64).r == 64


def test_defaults_are_the_fast_path() -> None:
    q, t = QLoRAConfig(), TrainingConfig()
    assert q.quantize and q.dropout == 0.0 and q.target_modules is None  # the architecture's own list
    assert t.packing and t.packing_strategy == "bfd" and t.padding_free is None and t.liger_kernel is None
    assert t.attn_implementation == "auto" and t.gradient_checkpointing and t.uses_padding_free
    assert TrainingConfig.seed_recipe().attn_implementation == "sdpa"
    assert not TrainingConfig.seed_recipe().uses_padding_free


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        TrainingConfig(learning_rate=0, per_device_batch_size=0, max_steps=0, nonsense=1)  # type: ignore[call-arg]
    fields = {p.path for p in info.value.problems}
    assert {"learning_rate", "per_device_batch_size", "max_steps", "nonsense"} <= fields


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"overwrite": True, "resume": True}, "overwrite and resume exclude each other"),
        ({"packing": False, "padding_free": True}, "padding_free without packing"),
        ({"packing_strategy": "wrapped", "padding_free": True}, "padding_free needs packing_strategy 'bfd'"),
        ({"uncheckpointed_layers": 2, "gradient_checkpointing": False}, "needs gradient_checkpointing on"),
        ({"uncheckpointed_layers": -1}, "give 0 or more"),
        ({"uncheckpointed_layers": True}, "is a flag"),
        ({"uncheckpointed_layers": "all"}, "uncheckpointed_layers"),
    ],
)
def test_contradictory_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainingConfig(**settings)  # type: ignore[arg-type]


def test_target_modules() -> None:
    assert QLoRAConfig(target_modules=("q_proj", "v_proj")).target_modules == ("q_proj", "v_proj")
    assert QLoRAConfig(target_modules="all-linear").target_modules == "all-linear"
    with pytest.raises(ConfigError, match="target_modules"):
        QLoRAConfig(target_modules=())


def test_config_hash_ignores_where_and_how_to_log() -> None:
    a = TrainingConfig(output_dir="a", logging_steps=1)
    b = TrainingConfig(output_dir="b", logging_steps=50, resume=True)
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != TrainingConfig(output_dir="a", learning_rate=1e-4).config_hash()


def test_train_file(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"dataset": "runs/data", "qlora": {"r": 8}, "training": {"max_steps": 3}}))
    loaded = load_stage_file(path, TRAIN_LAYOUT)
    q, t = loaded.configs["qlora"], loaded.configs["training"]
    assert (loaded.input, q.r, t.max_steps) == ("runs/data", 8, 3)
    assert load_stage_file(path, TRAIN_LAYOUT, input="other").input == "other"
    override = load_stage_file(path, TRAIN_LAYOUT, overrides={"training": {"max_steps": 5}})
    assert override.configs["training"].max_steps == 5 and override.configs["qlora"].r == 8
    path.write_text(json.dumps({"qlora": {"r": 8}}))
    with pytest.raises(ConfigError, match="dataset: give the dataset's directory"):
        load_stage_file(path, TRAIN_LAYOUT)
    # Every problem of every section, and the missing input, in one error.
    path.write_text(json.dumps({"qlora": {"rank": 8}, "training": {"max_step": 3}}))
    with pytest.raises(ConfigError, match=r"3 problems") as caught:
        load_stage_file(path, TRAIN_LAYOUT)
    paths = sorted(p.path for p in caught.value.problems)
    assert paths == ["dataset", "qlora.rank", "training.max_step"], paths


def test_memory_estimate_for_mistral_7b() -> None:
    run = TrainingConfig(per_device_batch_size=4, max_length=2048)
    est = estimate_memory(MISTRAL_7B, QLoRAConfig(), run, "bfloat16")
    assert est is not None
    # 7.25B parameters: ~3.5 GiB of 4-bit linear layers + 0.5 GiB of bf16 embeddings and head.
    assert 3.5 * GiB < est.weights < 4.5 * GiB
    # 42M LoRA parameters with float32 weights, gradients and two AdamW moments: ~0.6 GiB.
    assert 0.5 * GiB < est.adapter < 0.8 * GiB
    # The seed's recipe peaked at 10.6 GiB with this shape, the defaults at 7.9 (H100/H200): the estimate
    # must not be below (it exists to fail early) nor wildly above (it would refuse runs that fit).
    assert 10.5 * GiB < est.total < 16 * GiB, est.describe()
    # Without gradient checkpointing, activations grow with the layer count.
    no_gc = estimate_memory(MISTRAL_7B, QLoRAConfig(), run.replace(gradient_checkpointing=False), "bfloat16")
    assert no_gc is not None and no_gc.activations > 8 * est.activations
    # Unquantized, weights are 2 bytes each.
    full = estimate_memory(MISTRAL_7B, QLoRAConfig(quantize=False), run, "bfloat16")
    assert full is not None and full.weights > 13 * GiB
    assert estimate_memory({"model_type": "odd"}, QLoRAConfig(), run, "bfloat16") is None


def test_kept_layers_spend_what_a_plain_lm_heads_logits_would_take() -> None:
    run, q = TrainingConfig(per_device_batch_size=4, max_length=2048), QLoRAConfig()
    kept = kept_layers(MISTRAL_7B, q, run, "bfloat16", "cuda")
    # the logits of 8192 tokens x 32768 entries at 10 bytes: 2.5 GiB; a layer's activations ~1.2 GiB:
    # the top layer (recomputed first anyway) and two more
    assert kept.count == 3 and "the last 3 of 32 layers" in kept.line and "2.5 GiB" in kept.line, kept
    assert kept_layers(MISTRAL_7B, q, run, "bfloat16", "cpu").count == 0  # CPU runs as before
    bigger_vocab = {**MISTRAL_7B, "vocab_size": 128256}  # bigger logits, more layers kept
    assert kept_layers(bigger_vocab, q, run, "bfloat16", "cuda").count > 3
    longer = run.replace(max_length=4096)  # logits and layers both double: the same count
    assert kept_layers(MISTRAL_7B, q, longer, "bfloat16", "cuda").count == 3
    # never more than fits in the device's free memory, by the estimate
    base = estimate_memory(MISTRAL_7B, q, run, "bfloat16")
    one = estimate_memory(MISTRAL_7B, q, run, "bfloat16", kept=1)
    assert base is not None and one is not None and one.activations > base.activations
    assert kept_layers(MISTRAL_7B, q, run, "bfloat16", "cuda", free=base.total).count == 0
    room_for_two = base.total + 2 * (one.total - base.total)
    assert kept_layers(MISTRAL_7B, q, run, "bfloat16", "cuda", free=room_for_two).count == 2
    assert kept_layers(MISTRAL_7B, q, run, "bfloat16", "cuda", free=80 * GiB).count == 3
    # set by hand: as given (on any device), at most every layer; nothing without checkpointing
    assert kept_layers(MISTRAL_7B, q, run.replace(uncheckpointed_layers=5), "bfloat16", "cpu").count == 5
    assert kept_layers(MISTRAL_7B, q, run.replace(uncheckpointed_layers=99), "bfloat16", "cuda").count == 32
    assert kept_layers(MISTRAL_7B, q, run.replace(uncheckpointed_layers=0), "bfloat16", "cuda").count == 0
    off = run.replace(gradient_checkpointing=False)
    assert kept_layers(MISTRAL_7B, q, off, "bfloat16", "cuda").count == 0
    assert TrainingConfig.seed_recipe().uncheckpointed_layers == 0  # the seed checkpoints every layer


def test_memory_estimate_for_a_mixture_of_experts() -> None:
    # Qwen3-30B-A3B: 128 experts of moe_intermediate_size 768, 8 routed per token; ~30.5B parameters.
    qwen3_moe = {
        "model_type": "qwen3_moe", "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
        "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "tie_word_embeddings": False,
    }  # fmt: skip
    est = estimate_memory(qwen3_moe, QLoRAConfig(), TrainingConfig(), "bfloat16")
    assert est is not None
    # ~29B parameters in 4-bit expert and attention layers (~15 GiB) + 1.2 GiB of embeddings and head;
    # not intermediate_size x 128 experts (which would be ~116 GiB of weights).
    assert 14 * GiB < est.weights < 18 * GiB, est.describe()
