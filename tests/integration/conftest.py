"""Fixtures shared by the integration tests: a tiny real model, and local stacks started on demand."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.local import LocalBedrockConfig, LocalStack

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="session")
def tiny_model_dir(embedded_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real but tiny Llama (random weights, the embedded model's tokenizer): fast to copy and load."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    data = json.loads((out / "config.json").read_text())
    data["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(data))
    for name in TOKENIZER_FILES:
        shutil.copy(embedded_dir / name, out / name)
    return out


@pytest.fixture
def make_model(tiny_model_dir: Path, tmp_path: Path) -> Callable[..., Path]:
    """A copy of the tiny model with config.json changed, and files added or removed."""

    def make(
        config: dict[str, Any] | None = None,
        *,
        add: dict[str, bytes] | None = None,
        remove: tuple[str, ...] = (),
    ) -> Path:
        directory = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_model_dir, directory)
        if config:
            data = json.loads((directory / "config.json").read_text())
            data.update(config)
            (directory / "config.json").write_text(json.dumps(data))
        for name, content in (add or {}).items():
            (directory / name).write_bytes(content)
        for name in remove:
            (directory / name).unlink()
        return directory

    return make


@pytest.fixture
def new_stack(tmp_path: Path) -> Iterator[Callable[..., LocalStack]]:
    """Start stacks with the given settings; each is stopped after the test."""
    stacks: list[LocalStack] = []

    def start(**settings: Any) -> LocalStack:
        settings.setdefault("data_dir", tmp_path / f"data-{len(stacks)}")
        stack = LocalStack(LocalBedrockConfig(**settings), export_env=False).start()
        stacks.append(stack)
        return stack

    yield start
    for stack in reversed(stacks):
        stack.stop()
