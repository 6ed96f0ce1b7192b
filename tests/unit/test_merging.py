"""The merge's pure-Python parts: config, shard layout, the safetensors writer, adapter planning."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from bedrock_ft._safetensors import read_header
from bedrock_ft.config import load_stage_file
from bedrock_ft.errors import ConfigError, MergeError
from bedrock_ft.merging import MERGE_LAYOUT, MergeConfig
from bedrock_ft.merging._adapter import plan_adapter
from bedrock_ft.merging._base import check_not_quantized
from bedrock_ft.merging._checkpoint import (
    OutTensor,
    index_json,
    plan_shards,
    read_checkpoint,
    shard_name,
    write_shard,
)
from bedrock_ft.merging._config import parse_size
from bedrock_ft.merging._export import is_allowed


@pytest.mark.parametrize(
    ("text", "size"),
    [("2GB", 2 * 10**9), ("500MB", 500 * 10**6), ("1.5GiB", 3 * 2**29), ("4096", 4096), (123456, 123456)],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_config_defaults_and_problems() -> None:
    config = MergeConfig()
    assert (config.dtype, config.mode, config.shard_bytes, config.verify) == (
        "bfloat16",
        "auto",
        2 * 10**9,
        True,
    )
    with pytest.raises(ConfigError) as info:
        MergeConfig(max_shard_size="12 apples", dtype="int4", verify_layers=0)  # type: ignore[arg-type]
    assert sorted(p.path for p in info.value.problems) == ["dtype", "max_shard_size", "verify_layers"]
    with pytest.raises(ConfigError, match="under 1 KiB"):
        MergeConfig(max_shard_size=10)
    # Where it goes and how it is checked don't change the merged bytes; dtype and shard size do.
    assert (
        MergeConfig(output_dir="a", mode="streaming").config_hash()
        == MergeConfig(output_dir="b").config_hash()
    )
    assert MergeConfig(dtype="float16").config_hash() != MergeConfig().config_hash()


def test_merge_file(tmp_path: Path) -> None:
    sectioned = tmp_path / "merge.yaml"
    sectioned.write_text("adapter: runs/adapter\nmerge:\n  dtype: float32\n")
    loaded = load_stage_file(sectioned, MERGE_LAYOUT)
    assert (loaded.input, loaded.configs["merge"]) == ("runs/adapter", MergeConfig(dtype="float32"))
    flat = tmp_path / "flat.toml"
    flat.write_text('mode = "streaming"\n')
    loaded = load_stage_file(flat, MERGE_LAYOUT, input="runs/other")
    assert (loaded.input, loaded.configs["merge"]) == ("runs/other", MergeConfig(mode="streaming"))
    with pytest.raises(ConfigError, match="adapter: give the adapter's run directory"):
        load_stage_file(flat, MERGE_LAYOUT)
    # A problem is named where the file has it: at the top level, or in the merge section.
    flat.write_text('mode = "streaming"\ndtyp = "float32"\n')
    with pytest.raises(ConfigError) as caught:
        load_stage_file(flat, MERGE_LAYOUT, input="x")
    assert [p.path for p in caught.value.problems] == ["dtyp"]
    sectioned.write_text("adapter: a\nmerge:\n  dtyp: float32\n")
    with pytest.raises(ConfigError) as caught:
        load_stage_file(sectioned, MERGE_LAYOUT)
    assert [p.path for p in caught.value.problems] == ["merge.dtyp"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("adapter: x\nmerge: {}\ntrain: {}\n")
    with pytest.raises(ConfigError, match="unknown top-level key"):
        load_stage_file(bad, MERGE_LAYOUT)


def _t(name: str, n: int) -> OutTensor:
    return OutTensor(name, "BF16", (n // 2,))


def test_plan_shards_keeps_order_and_limit() -> None:
    tensors = [_t("a", 40), _t("b", 40), _t("c", 30), _t("huge", 500), _t("d", 10)]
    shards = plan_shards(tensors, 100)
    assert [[t.name for t in s] for s in shards] == [["a", "b"], ["c"], ["huge"], ["d"]]
    assert shard_name(0, 4) == "model-00001-of-00004.safetensors"
    index = json.loads(index_json(shards, [shard_name(i, 4) for i in range(4)]))
    assert index["metadata"]["total_size"] == 620
    assert index["weight_map"]["huge"] == "model-00003-of-00004.safetensors"


def test_write_shard_is_a_valid_safetensors_file(tmp_path: Path) -> None:
    tensors = [OutTensor("w", "F32", (2, 3)), OutTensor("b", "BF16", (3,))]
    data = {"w": struct.pack("<6f", *range(6)), "b": b"\x01\x02" * 3}

    def chunks(t: OutTensor) -> list[bytes]:
        raw = data[t.name]
        return [raw[:4], raw[4:]]

    written = write_shard(tmp_path / "x.safetensors", tensors, chunks)
    raw = (tmp_path / "x.safetensors").read_bytes()
    assert written.size == len(raw)
    header_len = struct.unpack("<Q", raw[:8])[0]
    assert header_len % 8 == 0  # data aligned as the safetensors library aligns it
    header = read_header(tmp_path / "x.safetensors")
    assert header["w"].shape == (2, 3) and header["b"].dtype == "BF16"
    assert raw[header["w"].offset : header["w"].offset + 24] == data["w"]
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"] == {"format": "pt"}
    assert list(read_checkpoint(tmp_path)) == ["w", "b"]


def test_write_shard_refuses_short_data(tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="wrote 2 bytes, expected 4"):
        write_shard(tmp_path / "x.safetensors", [OutTensor("v", "F32", (1,))], lambda t: [b"\0\0"])


PREFIX = "base_model.model.model.layers.0."
ADAPTER = {
    f"{PREFIX}self_attn.q_proj.lora_A.weight": (8, 64),
    f"{PREFIX}self_attn.q_proj.lora_B.weight": (64, 8),
    f"{PREFIX}self_attn.v_proj.lora_A.weight": (8, 64),
    f"{PREFIX}self_attn.v_proj.lora_B.weight": (16, 8),
}
BASE = {
    "model.layers.0.self_attn.q_proj.weight": (64, 64),
    "model.layers.0.self_attn.v_proj.weight": (16, 64),
    "model.layers.0.self_attn.q_proj.bias": (64,),
}


def test_plan_maps_pairs_and_scales() -> None:
    plan = plan_adapter({"lora_alpha": 16, "alpha_pattern": {"v_proj": 4}}, ADAPTER, BASE)
    q, v = (
        plan.targets["model.layers.0.self_attn.q_proj.weight"],
        plan.targets["model.layers.0.self_attn.v_proj.weight"],
    )
    assert (q.rank, q.scale, v.scale) == (8, 2.0, 0.5)
    rs = plan_adapter({"lora_alpha": 16, "use_rslora": True}, ADAPTER, BASE)
    assert rs.targets[q.weight].scale == pytest.approx(16 / math.sqrt(8))
    trained_bias = {**ADAPTER, "base_model.model.model.layers.0.self_attn.q_proj.bias": (64,)}
    assert plan_adapter({}, trained_bias, BASE).replaced == {
        "model.layers.0.self_attn.q_proj.bias": "base_model.model.model.layers.0.self_attn.q_proj.bias"
    }
    dora = {**ADAPTER, f"{PREFIX}self_attn.q_proj.lora_magnitude_vector": (64,)}
    assert plan_adapter({}, dora, BASE).unsupported == [
        f"{PREFIX}self_attn.q_proj.lora_magnitude_vector (DoRA magnitude)"
    ]


def test_plan_names_the_first_misfit() -> None:
    with pytest.raises(MergeError) as info:
        plan_adapter(
            {}, ADAPTER, {**BASE, "model.layers.0.self_attn.q_proj.weight": (32, 64)}, where="adapter X"
        )
    assert str(info.value).startswith(
        "adapter X does not fit this base model: "
        f"adapter tensor {PREFIX}self_attn.q_proj.lora_A.weight [8, 64] with "
        f"{PREFIX}self_attn.q_proj.lora_B.weight [64, 8] makes a [64, 64] update, but base tensor "
        "model.layers.0.self_attn.q_proj.weight is [32, 64]."
    )
    lonely = {k: v for k, v in ADAPTER.items() if "v_proj.lora_B" not in k}
    with pytest.raises(MergeError, match=r"v_proj\.lora_A\.weight has no lora_B partner"):
        plan_adapter({}, lonely, BASE)


@pytest.mark.parametrize(
    ("config", "dtypes", "expected"),
    [
        ({"quantization_config": {"quant_method": "gptq"}}, {}, "quantized with GPTQ"),
        ({"text_config": {"quantization_config": {"quant_method": "awq"}}}, {}, "quantized with AWQ"),
        (
            {},
            {"model.layers.0.mlp.up_proj.weight": "U8"},
            "stored quantized (model.layers.0.mlp.up_proj.weight is U8)",
        ),
    ],
)
def test_quantized_bases_are_refused(
    config: dict[str, object], dtypes: dict[str, str], expected: str
) -> None:
    with pytest.raises(MergeError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check_not_quantized(Path("base"), config, dtypes)
    check_not_quantized(Path("base"), {}, {"model.embed_tokens.weight": "BF16"})


def test_export_allowlist() -> None:
    assert is_allowed("model-00001-of-00002.safetensors") and is_allowed("tokenizer.model")
    for name in (
        "adapter_model.safetensors",
        "pytorch_model.bin",
        "chat_template.jinja",
        "README.md",
        "manifest.json",
    ):
        assert not is_allowed(name)


def test_fan_in_fan_out_follows_each_weight_layout() -> None:
    """GPT-2 style: Conv1D weights are (in, out), a Linear head (out, in); the shape decides per layer."""
    adapter = {
        "base_model.model.h.0.attn.c_attn.lora_A.weight": (4, 64),
        "base_model.model.h.0.attn.c_attn.lora_B.weight": (192, 4),
        "base_model.model.lm_head.lora_A.weight": (4, 64),
        "base_model.model.lm_head.lora_B.weight": (500, 4),
    }
    base = {"h.0.attn.c_attn.weight": (64, 192), "lm_head.weight": (500, 64)}
    plan = plan_adapter({"fan_in_fan_out": True, "lora_alpha": 8}, adapter, base)
    assert plan.targets["h.0.attn.c_attn.weight"].fan_in_fan_out is True
    assert plan.targets["lm_head.weight"].fan_in_fan_out is False


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"init_lora_weights": "pissa_niter_4"}, "path_initial_model_for_weight_conversion"),
        ({"init_lora_weights": "olora"}, "trains against a modified base"),
        ({"alora_invocation_tokens": [5, 6]}, "activated LoRA"),
        ({"peft_type": "IA3"}, "merges LoRA adapters only"),
    ],
)
def test_adapters_that_need_another_base_are_refused(
    tmp_path: Path, extra: dict[str, object], expected: str
) -> None:
    from bedrock_ft.merging._adapter import resolve_adapter

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, **extra}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(MergeError, match=expected):
        resolve_adapter(tmp_path)


def test_leftovers_of_this_output_only(tmp_path: Path) -> None:
    """A killed merge into 'merged' leaves temp dirs; those of 'merged.v2' are another output's."""
    from bedrock_ft.merging._output import remove_leftovers as _remove_leftovers

    for name in (
        ".bedrock-ft-tmp-merged.abc1",
        ".bedrock-ft-tmp-merged.v2.abc2",
        ".bedrock-ft-old-merged.v2.abc3",
    ):
        (tmp_path / name).mkdir()
    (tmp_path / ".bedrock-ft-old-merged.abc4").mkdir()
    (tmp_path / ".bedrock-ft-old-merged.abc4" / "manifest.json").write_text("{}")
    _remove_leftovers(tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".bedrock-ft-old-merged.v2.abc3", ".bedrock-ft-tmp-merged.v2.abc2", "merged"
    ]  # fmt: skip
    assert (tmp_path / "merged" / "manifest.json").is_file()  # the moved-aside merge is restored
