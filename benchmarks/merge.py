"""AdapterMerger: time and peak RSS of the streaming and in-memory merges, against copying the shards.

    python benchmarks/merge.py                              # the embedded model (CPU)
    python benchmarks/merge.py --model mistral-7b --workdir /big/disk --modes streaming,memory-cuda

``mistral-7b`` writes a random-init Mistral-7B-shaped base as 2 GB bf16 shards (7.24B parameters,
14.5 GB) and a random rank-16 adapter on every projection; the values don't matter to the timing.
The baseline is copying the base's shards (``shutil.copyfile`` + fsync, as the merge fsyncs its
own). Every file is in the page cache for both (the base was just written or read), so the ratio
compares the merge's work with the copy's, not with the disk's speed.

Each merge runs in its own process, which reports its peak RSS (VmHWM) and its RSS after imports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "vocab_size": 32000, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False, "hidden_act": "silu",
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "transformers_version": "4.57.6",
}  # fmt: skip


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def _mistral_shapes() -> list[tuple[str, tuple[int, ...]]]:
    c = MISTRAL_7B
    h, inter, kv = c["hidden_size"], c["intermediate_size"], c["num_key_value_heads"] * c["head_dim"]
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (c["vocab_size"], h))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (inter, h)),
            (p + "mlp.up_proj.weight", (inter, h)),
            (p + "mlp.down_proj.weight", (h, inter)),
        ]
    return [*shapes, ("model.norm.weight", (h,)), ("lm_head.weight", (c["vocab_size"], h))]


def _write_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def make_mistral_base(directory: Path, shard_bytes: int = 2 * 10**9) -> Path:
    """A random bf16 Mistral-7B-shaped checkpoint in 2 GB shards (random numbers made on the GPU if any)."""
    import torch
    from safetensors.torch import save_file

    if (directory / "model.safetensors.index.json").is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(0)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in _mistral_shapes():
        n = 2 * int(torch.Size(shape).numel())
        if shards[-1] and size + n > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += n
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, shape in shard:
            t = (
                torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
                .mul_(0.02)
                .to(torch.bfloat16)
            )
            tensors[name] = t.cpu()
            weight_map[name] = file
            total += 2 * t.numel()
        save_file(tensors, str(directory / file), metadata={"format": "pt"})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    (directory / "config.json").write_text(json.dumps(MISTRAL_7B, indent=2))
    (directory / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    _write_tokenizer(directory)
    return directory


def make_adapter(base_dir: Path, directory: Path, r: int = 16, alpha: float = 32.0) -> Path:
    """A random rank-``r`` LoRA on every projection of ``base_dir``, saved as peft saves it."""
    import torch
    from safetensors.torch import save_file

    from bedrock_ft.merging._checkpoint import read_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(1)
    tensors = {}
    for name, stored in read_checkpoint(base_dir).items():
        module = name.removesuffix(".weight")
        if module.rsplit(".", 1)[-1] in PROJECTIONS:
            out_f, in_f = stored.info.shape
            key = f"base_model.model.{module}"
            tensors[f"{key}.lora_A.weight"] = torch.randn((r, in_f), generator=gen) * 0.01
            tensors[f"{key}.lora_B.weight"] = torch.randn((out_f, r), generator=gen) * 0.01
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
        "target_modules": list(PROJECTIONS), "bias": "none", "base_model_name_or_path": str(base_dir),
        "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
    }  # fmt: skip
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return directory


def copy_shards(base_dir: Path, out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for shard in sorted(base_dir.glob("*.safetensors")):
        shutil.copyfile(shard, out / shard.name)
        with (out / shard.name).open("rb+") as fh:
            os.fsync(fh.fileno())
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return seconds


def child(mode: str, adapter: str, base: str, out: str, workers: int | None) -> None:
    """One merge in this process: print its time and memory as JSON."""
    import peft  # noqa: F401  imported before the baseline RSS is read
    import safetensors  # noqa: F401
    import torch
    import transformers  # noqa: F401

    from bedrock_ft.merging import AdapterMerger, MergeConfig

    base_rss = _status("VmRSS:")
    kind, _, device = mode.partition("-")
    config = MergeConfig(
        output_dir=out, base_model=base, mode=kind, device=device or "auto", workers=workers,
        overwrite=True, check_bedrock=False,
    )  # fmt: skip
    started = time.perf_counter()

    def step(message: str) -> None:
        print(f"STEP {time.perf_counter() - started:7.2f} s  {message}", flush=True)

    artifact = AdapterMerger(config, progress=step).merge(adapter)
    seconds = time.perf_counter() - started
    result = {
        "mode": mode,
        "seconds": seconds,
        "peak_rss": _status("VmHWM:"),
        "rss_after_imports": base_rss,
        "gpu_peak": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0,
        "bytes": artifact.total_bytes,
        "verification": artifact.merge.verification.model_dump() if artifact.merge.verification else None,
    }
    print("RESULT " + json.dumps(result))


def _run_child(mode: str, adapter: Path, base: Path, out: Path, workers: int | None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--adapter",
        str(adapter),
        "--base",
        str(base),
        "--out",
        str(out),
    ]
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-4000:]}")
    shutil.rmtree(out, ignore_errors=True)
    for step in (ln for ln in proc.stdout.splitlines() if ln.startswith("STEP ")):
        print(f"  {mode}: {step[5:]}", file=sys.stderr)
    return dict(json.loads(line[len("RESULT ") :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["embedded", "mistral-7b"], default="embedded")
    parser.add_argument("--workdir", type=Path, default=Path("bench-merge"))
    parser.add_argument("--modes", default="streaming,memory-cpu")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--adapter", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.adapter, args.base, args.out, args.workers)
        return
    work = args.workdir.resolve()
    if args.model == "embedded":
        from bedrock_ft.models import embedded_model

        base = embedded_model()
    else:
        started = time.perf_counter()
        base = make_mistral_base(work / "base")
        print(f"base ready in {time.perf_counter() - started:.0f} s", flush=True)
    adapter = make_adapter(base, work / "adapter")
    base_bytes = sum(p.stat().st_size for p in base.glob("*.safetensors"))
    copy_shards(base, work / "warmup-copy")  # reads the base once so every run finds it in the page cache
    copy_s = copy_shards(base, work / "copy")
    print(f"model: {args.model}, {base_bytes / 1e9:.2f} GB of shards; copy {copy_s:.2f} s "
          f"({base_bytes / copy_s / 1e9:.2f} GB/s); cpus {os.cpu_count()}")  # fmt: skip
    print("| mode | seconds | × copy | peak RSS GiB | RSS growth GiB | GPU peak GiB | check max rel |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        r = _run_child(mode, adapter, base, work / f"out-{mode}", args.workers)
        checks = r["verification"] or {}
        check = checks.get("logits") or checks.get("weights") or {}
        print(
            f"| {mode} | {r['seconds']:.2f} | {r['seconds'] / copy_s:.2f} | {r['peak_rss'] / 2**30:.2f} | "
            f"{(r['peak_rss'] - r['rss_after_imports']) / 2**30:.2f} | {r['gpu_peak'] / 2**30:.2f} | "
            f"{check.get('max_rel', float('nan')):.2g} ({check.get('kind', '-')}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
