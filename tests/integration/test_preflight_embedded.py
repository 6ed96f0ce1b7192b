"""The embedded model, as bedrock-ft converts it, passes Custom Model Import preflight."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bedrock_ft.preflight import check_model_dir

pytestmark = pytest.mark.slow


def test_embedded_model_passes_preflight_clean(embedded_dir: Path) -> None:
    report = check_model_dir(embedded_dir)
    # No warnings either: SmolLM2 is not Llama 3 (no rope override), keeps torch_dtype beside dtype,
    # carries its ChatML template in tokenizer_config.json, and its 49152 tokens fill the embedding.
    assert report.findings == (), [str(f) for f in report.findings]
    assert report.raise_for_errors() is report


def test_preflight_sees_a_real_sharded_save(embedded_dir: Path, tmp_path: Path) -> None:
    """transformers' own sharded save passes; losing a shard is an error naming it.

    transformers 4.57 writes only "dtype" to config.json, never "torch_dtype": that is a warning.
    """
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.bfloat16)
    out = tmp_path / "sharded"
    model.save_pretrained(out, safe_serialization=True, max_shard_size="100MB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded_dir / name, out / name)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").exists()
    report = check_model_dir(out)
    assert report.errors == ()
    assert [f.rule for f in report.warnings] == ["config-torch-dtype"]
    assert "torch_dtype" not in json.loads((out / "config.json").read_text())

    (out / shards[-1]).unlink()
    (error,) = check_model_dir(out).errors
    assert (error.rule, error.path) == ("safetensors-index", shards[-1])
