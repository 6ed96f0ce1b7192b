"""Where a QLoRA step's time goes, on one CUDA GPU: the defaults with peft's LoRA layers and fused.

The model is train_throughput.py's random-init Mistral-7B shape (same directory with ``--model-dir``),
loaded with bedrock-ft's own ``build_model`` and liger-kernel's instance patch, as the trainer does;
one packed padding-free row of 4 x 2048 tokens a step (four records), bf16 autocast, gradient
checkpointing, AdamW (fused). A plain loop times forward, backward (which holds the checkpointed
forward's recomputation) and the optimizer with CUDA events; one step under torch.profiler splits the
GPU time by kernel kind, and the matmuls by their shapes into the base projections, the LoRA products
(a dimension of rank r) and the LM head (a dimension of the vocabulary). Variant ``trainer`` profiles
a step of the defaults through QLoRATrainer instead, with the GPU's idle time in it.

    PYTHONPATH=$PWD/.site:$PWD/src python benchmarks/train_profile.py --model-dir /tmp/m7b --out $OUT/p.json
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import BATCH, SEQ, VOCAB, make_model

KINDS = [  # first match wins: (kind, pattern on the kernel's name)
    ("dequantize (bitsandbytes)", r"dequantize|kDequant"),
    ("attention", r"flex|triton_tem|flash|attention|fmha|sdpa"),
    ("rmsnorm", r"rms"),
    ("rope", r"rope"),
    ("swiglu / activation", r"swiglu|silu"),
    ("cross-entropy (fused with LM head)", r"cross_entropy|_ce_|element_mul"),
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("matmul", r"gemm|nvjet|cutlass|xmma|sm90_|sm80_|cublas|Kernel2"),
    ("memcpy / memset", r"Memcpy|Memset"),
    ("elementwise, casts, copies", r"elementwise|copy|cat|fill|reduce|index|where|bernoulli|distribution"),
]
MM_OPS = {"aten::mm", "aten::addmm", "aten::addmm_"}


def _kind(name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return "other"


def categorize(prof: Any) -> dict[str, Any]:
    """GPU time of one profiled step by kernel kind, the matmuls by shape, and the top kernels."""
    from torch.autograd import DeviceType

    kinds: dict[str, float] = {}
    names: dict[str, list[tuple[float, str]]] = {}
    for row in prof.key_averages():
        t = row.self_device_time_total
        # kernels only: CPU-side records (an op, a compiled graph's call) also carry their kernels' time
        if t > 0 and row.device_type == DeviceType.CUDA:
            kind = _kind(row.key)
            kinds[kind] = kinds.get(kind, 0.0) + t / 1e6
            names.setdefault(kind, []).append((t / 1e6, row.key[:90]))
    mm = {"base projections": 0.0, "LoRA products (rank r)": 0.0, "LM head": 0.0}
    for row in prof.key_averages(group_by_input_shape=True):
        if row.key in MM_OPS:
            dims = {d for shape in row.input_shapes for d in shape}
            part = "base projections"
            if VOCAB in dims or 16 in dims:
                part = "LM head" if VOCAB in dims else "LoRA products (rank r)"
            mm[part] += row.device_time_total / 1e6
    total = sum(kinds.values())
    by_kind = sorted(kinds.items(), key=lambda kv: -kv[1])
    return {
        "gpu_busy_s": round(total, 4),
        **_gaps(prof),
        "gpu_s_by_kernel_kind": {k: round(v, 4) for k, v in by_kind},
        "gpu_share_by_kernel_kind": {k: round(v / total, 3) for k, v in by_kind},
        "matmul_s_by_shape": {k: round(v, 4) for k, v in mm.items()},
        "top_kernels": {
            k: [(round(t, 4), n) for t, n in sorted(v, reverse=True)[:4]] for k, v in names.items()
        },
    }


def _gaps(prof: Any) -> dict[str, Any]:
    """Where the GPU waits within the step: the idle time between its first and last kernel, and the
    longest waits with the kernels on either side (a wait is the CPU not keeping up, or a sync)."""
    from torch.autograd import DeviceType

    spans = sorted(
        (e.time_range.start, e.time_range.end, e.name[:60])
        for e in prof.events()
        if e.device_type == DeviceType.CUDA and e.time_range.end > e.time_range.start
    )
    if not spans:
        return {}
    waits: list[tuple[float, str, str]] = []
    end, before = spans[0][1], spans[0][2]
    for start, stop, name in spans[1:]:
        if start > end:
            waits.append(((start - end) / 1e6, before, name))
        if stop >= end:
            end, before = stop, name
    waits.sort(reverse=True)
    return {
        "gpu_idle_between_kernels_s": round(sum(w for w, _, _ in waits), 4),
        "gpu_waits_over_1ms": sum(1 for w, _, _ in waits if w > 1e-3),
        "longest_waits": [(round(w, 4), a, b) for w, a, b in waits[:8]],
    }


def build(path: Path, fused: bool, attention: str) -> tuple[Any, Any]:
    import torch
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    from bedrock_ft.training import QLoRAConfig, TrainingConfig
    from bedrock_ft.training._model import build_model, resolve_precision

    training = TrainingConfig(base_model=str(path), fused_lora=fused, attn_implementation=attention)
    lines: list[str] = []
    model = build_model(str(path), QLoRAConfig(), training, device="cuda",
                        precision=resolve_precision("auto", "cuda"), arch=None, say=lines.append)  # fmt: skip
    print("  ", *lines, flush=True)
    _apply_liger_kernel_to_instance(model=model.get_base_model())
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
    return model, opt


def profile(path: Path, variant: str, steps: int, warm: int) -> dict[str, Any]:
    """``variant``: ``fused`` or ``unfused``, then optionally ``-flex`` or ``-varlen`` (the attention;
    default: what ``auto`` picks), ``-cudnn`` or ``-flash`` (varlen's kernel; default: the
    library's), ``-skipK`` (the last K layers not checkpointed) and ``-cprof`` (one more step under
    cProfile: where the CPU's time goes)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    from transformers.modeling_layers import GradientCheckpointingLayer

    from bedrock_ft.training import _attention

    torch.cuda.reset_peak_memory_stats()
    fused = variant.startswith("fused")
    attention = "flex_attention" if "-flex" in variant else "varlen" if "-varlen" in variant else "auto"
    _attention.kernel_preference = _kernel(variant)
    varlen = None if attention == "flex_attention" else _attention.varlen_kernel()
    model, opt = build(path, fused, attention)
    skip = int(variant.partition("-skip")[2] or 0)
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers[len(layers) - skip :]:
        layer.gradient_checkpointing = False
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB, (1, BATCH * SEQ), generator=g).cuda()
    pos = torch.arange(SEQ).repeat(BATCH)[None].cuda()

    issue: list[float] = []

    def step(times: list[tuple[float, float, float]] | None) -> None:
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        t0 = time.perf_counter()
        ev[0].record()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, position_ids=pos, labels=ids).loss
        ev[1].record()
        loss.backward()
        ev[2].record()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ev[3].record()
        issue.append(time.perf_counter() - t0)  # the CPU's time to queue the step (it waits only at syncs)
        torch.cuda.synchronize()
        if times is not None:
            times.append(tuple(ev[i].elapsed_time(ev[i + 1]) / 1000 for i in range(3)))  # type: ignore[arg-type]

    for _ in range(warm):
        step(None)
    times: list[tuple[float, float, float]] = []
    for _ in range(steps):
        step(times)
    med = sorted(times, key=sum)[len(times) // 2]
    cpu = sorted(issue[warm:])[len(issue[warm:]) // 2]
    hot = cpu_profile(lambda: step(None)) if "-cprof" in variant else {}
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        step(None)
    result = {
        "fused_lora": fused,
        "attention": attention + (f" ({varlen})" if varlen else ""),
        "layers_not_checkpointed": skip,
        "step_s": round(sum(med), 4),
        "tok_per_s": round(BATCH * SEQ / sum(med)),
        "forward_s": round(med[0], 4),
        "backward_s (with recompute)": round(med[1], 4),
        "optimizer_s": round(med[2], 4),
        "cpu_issue_s": round(cpu, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        **categorize(prof),
        **hot,
    }
    return result


def cpu_profile(run: Any, top: int = 25) -> dict[str, Any]:
    """The CPU's time in one step under cProfile, by function (self time and cumulative), to show what
    keeps the CPU from queueing kernels ahead of the GPU."""
    prof = cProfile.Profile()
    prof.runcall(run)
    return cpu_stats(prof, top)


def cpu_stats(prof: Any, top: int = 25) -> dict[str, Any]:
    stats = pstats.Stats(prof)
    rows = [(fn, st[2], st[3], st[1]) for fn, st in stats.stats.items()]  # type: ignore[attr-defined]

    def label(fn: tuple[str, int, str]) -> str:
        return f"{Path(fn[0]).parent.name}/{Path(fn[0]).name}:{fn[1]}:{fn[2]}"[-90:]

    hottest = sorted(rows, key=lambda r: -r[1])[:top]
    callers = {}  # who calls the five hottest functions: (self seconds spent for that caller, calls, caller)
    for fn, _, _, _ in hottest[:5]:
        by = stats.stats[fn][4]  # type: ignore[attr-defined]
        ranked = sorted(by.items(), key=lambda kv: -kv[1][2])[:6]
        callers[label(fn)] = [(round(v[2], 4), v[1], label(c)) for c, v in ranked]
    return {
        "cprofile_total_s": round(sum(r[1] for r in rows), 4),
        "cprofile_self_s": [(round(t, 4), n, label(fn)) for fn, t, _, n in hottest],
        "cprofile_cumulative_s": [
            (round(c, 4), n, label(fn)) for fn, _, c, n in sorted(rows, key=lambda r: -r[2])[:top]
        ],
        "cprofile_callers_of_hottest": callers,
    }


def _kernel(variant: str) -> str:
    from bedrock_ft.training import _attention

    kernel = "cudnn" if "-cudnn" in variant else "flash" if "-flash" in variant else None
    return kernel or _attention.kernel_preference


def trainer_profile(path: Path, variant: str, steps: int, warm: int) -> dict[str, Any]:
    """The defaults through ``QLoRATrainer`` (trl's SFTTrainer, its LM head and metrics, the optimizer,
    gradient clipping): one step after warm-up under torch.profiler, with its wall time, so the GPU's idle
    time within a step shows. ``variant``: ``trainer``, optionally ``-flash``/``-cudnn``, and ``-cprof``
    (the next step under cProfile)."""
    import tempfile

    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    from train_throughput import token_dataset
    from transformers import TrainerCallback

    from bedrock_ft.training import QLoRAConfig, QLoRATrainer, TrainingConfig, _attention

    _attention.kernel_preference = _kernel(variant)
    target = warm + 1
    cprof = "-cprof" in variant
    found: dict[str, Any] = {}

    class Profile(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step + 1 == target:
                torch.cuda.synchronize()
                found["prof"] = torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                                              record_shapes=True)  # fmt: skip
                found["prof"].__enter__()
                found["t0"] = time.perf_counter()

            if cprof and state.global_step + 1 == target + 1:
                found["cprof"] = cProfile.Profile()
                found["cprof"].enable()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == target:
                torch.cuda.synchronize()
                found["wall"] = time.perf_counter() - found["t0"]
                found["prof"].__exit__(None, None, None)
            if cprof and state.global_step == target + 1:
                found["cprof"].disable()

    torch.cuda.reset_peak_memory_stats()
    work = Path(tempfile.mkdtemp(prefix="bench-prof-"))
    training = TrainingConfig(base_model=str(path), output_dir=str(work / "run"), max_steps=warm + 1 + steps,
                              max_length=SEQ, per_device_batch_size=BATCH, save_steps=10_000,
                              logging_steps=1, tensorboard=False)  # fmt: skip
    trainer = QLoRATrainer(QLoRAConfig(), training, progress=lambda m: print("  ", m, flush=True),
                           progress_bar=False, callbacks=[Profile()])  # fmt: skip
    trainer.train(token_dataset(BATCH * (warm + 2 + steps)))
    kinds = categorize(found["prof"])
    hot = cpu_stats(found["cprof"]) if cprof else {}
    mon = trainer.monitor
    return {
        "tok_per_s": round(mon.tokens_per_second(skip=warm)),
        "step_s_median": round(sorted(mon.step_seconds[warm:])[len(mon.step_seconds[warm:]) // 2], 4),
        "profiled_step_wall_s (profiler on)": round(found["wall"], 4),
        "gpu_idle_in_profiled_step_s": round(found["wall"] - kinds["gpu_busy_s"], 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        **kinds,
        **hot,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default="unfused-flex,fused-flex,fused")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    path = Path(args.model_dir)
    if not (path / "tokenizer_config.json").is_file():
        t = time.perf_counter()
        make_model(path, args.layers)
        print(f"model made in {time.perf_counter() - t:.0f} s", flush=True)
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "results": {}}
    for name in args.variants.split(","):
        run = trainer_profile if name.startswith("trainer") else profile
        report["results"][name] = run(path, name, args.steps, args.warmup)
        print(name, json.dumps(report["results"][name], indent=1), flush=True)
        gc.collect()
        torch.cuda.empty_cache()
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
