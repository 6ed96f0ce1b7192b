"""QLoRA training throughput: the seed's recipe against bedrock-ft's default, on one CUDA GPU.

The model is a random-init Mistral-7B-v0.3-shaped model (throughput doesn't depend on the weights'
values, so nothing is downloaded), with a word-level tokenizer built here. Every variant trains on
the same 4 x 2048 tokens per optimizer step, with gradient checkpointing, and reports the median
tokens/s after warm-up and the peak GPU memory (torch.cuda.max_memory_allocated). Runs through the
trainer log at its default interval (every 10 steps), time their steps with CUDA events (the trainer's
monitor), and also report ``wall_tok_per_s``: the wall clock over the measured steps, gaps included.

Variants, all in one run on the same GPU:

- ``seed-raw``: the seed recipe exactly as the seed trains it (transformers + peft + bitsandbytes,
  a plain loop; the same code as the reference baseline of DESIGN §11);
- ``seed-trainer``: ``QLoRAConfig.seed_recipe()`` + ``TrainingConfig.seed_recipe()`` through
  ``QLoRATrainer`` (trl's SFTTrainer), so the trainer's own overhead is visible;
- ``default``: ``QLoRAConfig()`` + ``TrainingConfig()`` through ``QLoRATrainer`` (what users get);
- ``previous-default``: the defaults before the fused LoRA layers and varlen attention;
- further ``default`` variants that switch one fast-path setting off, to show what each is worth
  (``default-ungrouped``: each fused layer on its own; ``default-flash-varlen`` and
  ``default-cudnn-varlen``: varlen attention on flash attention 2's kernels or on cuDNN's;
  ``default-all-checkpointed``: every layer recomputed, ``uncheckpointed_layers=0``;
  ``default-nan-filter``: transformers' per-step nan/inf loss filter back on; ``default-log-every-step``:
  ``logging_steps=1``, a wait for the GPU at every step's end);
- ``default-fsdp-1``, and with several GPUs ``default-ddp-N`` and ``default-fsdp-N``: the defaults
  through ``backend='accelerate'`` (tok/s over all ranks, per GPU, and the scaling efficiency against
  ``default`` on one GPU).

Run on the GPU machine (see benchmarks/README.md for the package folder)::

    PYTHONPATH=$PWD/.site:$PWD/src python benchmarks/train_throughput.py --out $OUT/train_throughput.json

``--loss-curve STEPS`` compares the per-step losses of the defaults with the previous defaults instead
(use ``--layers 8`` for a quicker model of the same width).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

BATCH, SEQ = 4, 2048
VOCAB = 32768


def make_model(path: Path, layers: int) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, MistralConfig, PreTrainedTokenizerFast

    cfg = MistralConfig(
        vocab_size=VOCAB,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rope_theta=1e6,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(path, max_shard_size="5GB")
    del model
    torch.cuda.empty_cache()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {f"w{i}": i for i in range(4, VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    fast.save_pretrained(path)


def token_dataset(n_rows: int, seed: int = 0) -> Any:
    """Rows of exactly SEQ random tokens: packing (bfd or wrapped) gives full rows either way."""
    import torch
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (n_rows, SEQ), generator=g)
    return Dataset.from_dict({"input_ids": ids.tolist()})


def seed_raw(path: Path, steps: int, warm: int) -> dict[str, Any]:
    """The seed's recipe and loop, as in the reference baseline script."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    torch.cuda.reset_peak_memory_stats()
    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_quant_storage=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=q, dtype=torch.bfloat16, attn_implementation="sdpa", device_map={"": 0}
    )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lcfg = LoraConfig(
        r=16, lora_alpha=8, lora_dropout=0.05, bias="none", target_modules="all-linear", task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lcfg)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    x = torch.randint(4, VOCAB, (BATCH, SEQ), device="cuda")
    times = []
    for _ in range(warm + steps):
        torch.cuda.synchronize()
        s = time.perf_counter()
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - s)
    med = sorted(times[warm:])[len(times[warm:]) // 2]
    result = {"tok_per_s": round(BATCH * SEQ / med), "step_s_median": round(med, 3),
              "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}  # fmt: skip
    del model, opt, out
    return result


def via_trainer(
    path: Path, qlora: Any, training: Any, *, steps: int, warm: int, work: Path
) -> dict[str, Any]:
    import torch

    from bedrock_ft.training import QLoRATrainer

    torch.cuda.reset_peak_memory_stats()
    training = training.replace(
        base_model=str(path),
        output_dir=str(work / f"run-{time.monotonic_ns()}"),
        max_steps=warm + steps,
        max_length=SEQ,
        per_device_batch_size=BATCH,
        save_steps=10_000,
        tensorboard=False,
    )
    from transformers import TrainerCallback

    clock: list[float] = []  # when the first measured step begins, and when the last one has finished

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == warm:  # the GPU done with the warm-up: the clock starts from idle
                torch.cuda.synchronize()
                clock.append(time.perf_counter())

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == state.max_steps:
                torch.cuda.synchronize()
                clock.append(time.perf_counter())

    trainer = QLoRATrainer(qlora, training, progress=lambda m: print("  ", m, flush=True), progress_bar=False,
                           callbacks=[Clock()])  # fmt: skip
    artifact = trainer.train(token_dataset(BATCH * (warm + steps) + BATCH))
    mon = trainer.monitor
    pairs = list(zip(mon.step_seconds, mon.step_tokens, strict=True))[warm:]
    med_s = sorted(s for s, _ in pairs)[len(pairs) // 2]
    tokens = {t for _, t in pairs}
    result = {
        "tok_per_s": round(mon.tokens_per_second(skip=warm)),
        "step_s_median": round(med_s, 3),
        # wall clock over the steps after warm-up, gaps between steps included
        "wall_tok_per_s": round(sum(t for _, t in pairs) / (clock[-1] - clock[0])),
        "tokens_per_step": sorted(tokens),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "final_loss": artifact.train_metrics.final_loss,
    }
    del trainer
    return result


def via_launch(path: Path, qlora: Any, training: Any, *, steps: int, work: Path) -> dict[str, Any]:
    """backend='accelerate': the ranks report through the artifact (tok/s over all ranks, after the
    first two steps; peak memory of rank 0's GPU)."""
    from bedrock_ft.training import QLoRATrainer

    training = training.replace(
        base_model=str(path),
        output_dir=str(work / f"run-{time.monotonic_ns()}"),
        max_steps=steps + 2,
        max_length=SEQ,
        per_device_batch_size=BATCH,
        save_steps=10_000,
        logging_steps=1,
        tensorboard=False,
    )
    world = training.num_processes or 1
    trainer = QLoRATrainer(qlora, training, progress=lambda m: print("  ", m, flush=True), progress_bar=False)
    artifact = trainer.train(token_dataset(BATCH * world * (steps + 2) + BATCH * world))
    m = artifact.train_metrics
    return {
        "tok_per_s": round(m.tokens_per_second or 0),
        "tok_per_s_per_gpu": round((m.tokens_per_second or 0) / m.world_size),
        "world_size": m.world_size,
        "strategy": m.strategy,
        "peak_gib": m.peak_memory_gib,
        "final_loss": m.final_loss,
    }


def main() -> None:  # noqa: PLR0915
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--model-dir", default=None, help="keep the random-init model here, and reuse it")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs of the multi-GPU runs (default: all)")
    parser.add_argument(
        "--loss-curve", type=int, default=0, metavar="STEPS",
        help="instead: STEPS steps of the defaults and the previous ones (twice: the noise), learnable data",
    )  # fmt: skip
    parser.add_argument("--curves", default=None, help="with --loss-curve: the runs, comma-separated")
    parser.add_argument(
        "--varlen-kernel", default=None, choices=("auto", "cudnn", "flash"),
        help="varlen attention's kernel in every run (default: the library's; auto: cuDNN on Hopper when "
        "cudnn-frontend is installed)",
    )  # fmt: skip
    args = parser.parse_args()
    from bedrock_ft.training import _attention

    if args.varlen_kernel:
        _attention.kernel_preference = args.varlen_kernel
    if args.loss_curve:
        loss_curves(args)
        return

    import torch
    import transformers

    from bedrock_ft.training import QLoRAConfig, TrainingConfig

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    model_dir = Path(args.model_dir) if args.model_dir else work / "mistral-7b-shape"
    t = time.perf_counter()
    if not (model_dir / "tokenizer_config.json").is_file():
        make_model(model_dir, args.layers)
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "varlen_kernel": _attention.varlen_kernel(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "shape": f"Mistral-7B-v0.3 ({args.layers} layers), random init, vocab {VOCAB}",
        "tokens_per_step": BATCH * SEQ,
        "model_init_s": round(time.perf_counter() - t, 1),
        "results": {},
    }
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("peft", "trl", "bitsandbytes", "liger-kernel"):
        try:
            report["versions"][dist] = version(dist)
        except PackageNotFoundError:
            report["versions"][dist] = "absent"
    print(json.dumps(report), flush=True)

    def trainer_run(qlora: Any, training: Any, **internals: Any) -> Any:
        """``internals``: module settings for the run only (``kernel``: varlen's kernel preference;
        ``groups``: the fused layer groups; ``nan_filter``: transformers' per-step nan/inf loss filter,
        which bedrock-ft turns off)."""

        def run() -> dict[str, Any]:
            import trl

            from bedrock_ft.training import _attention, _fused_group

            saved = _attention.kernel_preference, _fused_group.GROUPS, trl.SFTConfig
            _attention.kernel_preference = internals.get("kernel", saved[0])
            _fused_group.GROUPS = internals.get("groups", saved[1])
            if internals.get("nan_filter"):

                def with_filter(*a: Any, **kw: Any) -> Any:
                    return saved[2](*a, **{**kw, "logging_nan_inf_filter": True})

                trl.SFTConfig = with_filter
            try:
                return via_trainer(model_dir, qlora, training, steps=args.steps, warm=args.warmup, work=work)
            finally:
                _attention.kernel_preference, _fused_group.GROUPS, trl.SFTConfig = saved

        return run

    variants: dict[str, Any] = {
        "seed-raw": lambda: seed_raw(model_dir, args.steps, args.warmup),
        "seed-trainer": trainer_run(QLoRAConfig.seed_recipe(), TrainingConfig.seed_recipe()),
        "default": trainer_run(QLoRAConfig(), TrainingConfig()),
        "default-unfused": trainer_run(QLoRAConfig(), TrainingConfig(fused_lora=False)),
        "default-ungrouped": trainer_run(QLoRAConfig(), TrainingConfig(), groups=()),
        "default-flash-varlen": trainer_run(QLoRAConfig(), TrainingConfig(), kernel="flash"),
        "default-all-checkpointed": trainer_run(QLoRAConfig(), TrainingConfig(uncheckpointed_layers=0)),
        "default-log-every-step": trainer_run(QLoRAConfig(), TrainingConfig(logging_steps=1)),
        "default-nan-filter": trainer_run(QLoRAConfig(), TrainingConfig(), nan_filter=True),
        "default-cudnn-varlen": trainer_run(QLoRAConfig(), TrainingConfig(), kernel="cudnn"),
        "default-flex": trainer_run(QLoRAConfig(), TrainingConfig(attn_implementation="flex_attention")),
        "previous-default": trainer_run(  # before the fused LoRA layers and varlen attention
            QLoRAConfig(), TrainingConfig(fused_lora=False, attn_implementation="flex_attention")
        ),
        "default-no-liger": trainer_run(QLoRAConfig(), TrainingConfig(liger_kernel=False)),
        "default-dropout-0.05": trainer_run(QLoRAConfig(dropout=0.05), TrainingConfig()),
        "default-dropout-0.05-fused": trainer_run(QLoRAConfig(dropout=0.05), TrainingConfig(fused_lora=True)),
        "default-bfd-padding-free": trainer_run(
            QLoRAConfig(), TrainingConfig(packing_strategy="bfd", padding_free=True)
        ),
        "default-wrapped": trainer_run(
            QLoRAConfig(), TrainingConfig(packing_strategy="wrapped", padding_free=False)
        ),
    }
    gpus = args.gpus or torch.cuda.device_count()

    def launched(strategy: str, world: int) -> Any:
        training = TrainingConfig(backend="accelerate", strategy=strategy, num_processes=world)
        return lambda: via_launch(model_dir, QLoRAConfig(), training, steps=args.steps, work=work)

    # one GPU through the launcher: what the launch and FSDP's wrapping cost against in-process training
    variants["default-fsdp-1"] = launched("fsdp", 1)
    if gpus > 1:
        variants[f"default-ddp-{gpus}"] = launched("ddp", gpus)
        variants[f"default-fsdp-{gpus}"] = launched("fsdp", gpus)
    chosen = args.only.split(",") if args.only else list(variants)
    for name in chosen:
        try:
            result = variants[name]()
        except Exception as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        gc.collect()
        torch.cuda.empty_cache()
        report["results"][name] = result
        print(name, json.dumps(result), flush=True)

    _ratios(report)
    print(json.dumps(report, indent=1), flush=True)
    if args.out:
        Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    sys.exit(0)


def learnable_dataset(n_rows: int, seed: int = 0) -> Any:
    """Rows of SEQ tokens the model can learn: 64 fixed 32-token phrases, in a random order."""
    import torch
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    phrases = torch.randint(4, VOCAB, (64, 32), generator=g)
    order = torch.randint(0, 64, (n_rows, SEQ // 32), generator=g)
    return Dataset.from_dict({"input_ids": phrases[order].reshape(n_rows, SEQ).tolist()})


def loss_curves(args: Any) -> None:
    """Per-step training loss of the defaults (fused LoRA layers, varlen attention) against the previous
    defaults (peft's layers, flex attention), same seed and data; the previous defaults twice, since GPU
    training isn't bitwise reproducible: the second run's distance from the first is the noise the
    defaults' distance is judged against. Then fused against unfused with LoRA dropout 0.05."""
    import torch

    from bedrock_ft.training import QLoRAConfig, QLoRATrainer, TrainingConfig, _attention

    work = Path(tempfile.mkdtemp(prefix="bench-loss-"))
    model_dir = Path(args.model_dir) if args.model_dir else work / "mistral-7b-shape"
    if not (model_dir / "tokenizer_config.json").is_file():
        make_model(model_dir, args.layers)
    steps = args.loss_curve
    data = learnable_dataset(BATCH * steps + BATCH)
    previous = {"fused_lora": False, "attn_implementation": "flex_attention"}
    runs: list[tuple[str, dict[str, Any], float]] = [
        ("default", {}, 0.0), ("previous-default", previous, 0.0), ("previous-default-again", previous, 0.0),
        ("fused-dropout", {}, 0.05), ("unfused-dropout", {"fused_lora": False}, 0.05),
    ]  # fmt: skip
    if args.curves:
        runs = [r for r in runs if r[0] in args.curves.split(",")]
    curves: dict[str, list[float]] = {}
    for name, settings, dropout in runs:
        training = TrainingConfig(
            base_model=str(model_dir), output_dir=str(work / name), max_steps=steps, max_length=SEQ,
            per_device_batch_size=BATCH, save_steps=10_000, logging_steps=1, tensorboard=False,
            learning_rate=1e-3, warmup_ratio=0.0, lr_scheduler="constant", **settings,
        )  # fmt: skip
        try:
            trainer = QLoRATrainer(QLoRAConfig(dropout=dropout), training, progress_bar=False)
            trainer.train(data)
        except Exception:
            traceback.print_exc()
            continue
        curves[name] = [loss for _, loss in trainer.monitor.losses]
        print(name, [round(x, 3) for x in curves[name]], flush=True)
        del trainer
        torch.cuda.empty_cache()

    def gap(a: str, b: str) -> dict[str, float] | str:
        if a not in curves or b not in curves:
            return "missing"
        rel = [abs(x - y) / y for x, y in zip(curves[a], curves[b], strict=True)]
        return {"max_rel": round(max(rel), 4), "mean_rel": round(sum(rel) / len(rel), 4)}

    report = {
        "gpu": torch.cuda.get_device_name(0), "layers": args.layers, "steps": steps, "curves": curves,
        "varlen_kernel": _attention.varlen_kernel(),
        "first_last": {k: (round(v[0], 3), round(v[-1], 3)) for k, v in curves.items()},
        "default_vs_previous": gap("default", "previous-default"),
        "noise_previous_vs_previous": gap("previous-default-again", "previous-default"),
        "fused_vs_unfused_dropout_0.05": gap("fused-dropout", "unfused-dropout"),
    }  # fmt: skip
    print(json.dumps({k: v for k, v in report.items() if k != "curves"}, indent=1), flush=True)
    if args.out:
        Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


def _ratios(report: dict[str, Any]) -> None:
    single = report["results"].get("default", {})
    for r in report["results"].values():
        if "tok_per_s_per_gpu" in r and r.get("peak_gib") and "tok_per_s" in single:
            r["speedup_vs_default_1gpu"] = round(r["tok_per_s"] / single["tok_per_s"], 3)
            r["scaling_efficiency"] = round(r["tok_per_s"] / (single["tok_per_s"] * r["world_size"]), 3)
    base = report["results"].get("seed-raw", {})
    for r in report["results"].values():
        if "tok_per_s" in r and "tok_per_s" in base:
            r["speed_vs_seed_raw"] = round(r["tok_per_s"] / base["tok_per_s"], 3)
            r["memory_vs_seed_raw"] = round(r["peak_gib"] / base["peak_gib"], 3)


if __name__ == "__main__":
    main()
