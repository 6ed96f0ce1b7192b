"""Merge a LoRA adapter into its full-precision base with AdapterMerger, and export it for Bedrock.

    python examples/merge_adapter.py                                  # trains a small adapter first (~30 s)
    python examples/merge_adapter.py --adapter runs/adapter --output-dir runs/merged
    python examples/merge_adapter.py --adapter runs/adapter --mode streaming --max-shard-size 2GB

The adapter is a training run directory (QLoRATrainer's output), its manifest, or any peft adapter
directory. The base is the one the adapter was trained on, loaded in full precision: never the 4-bit
model. Without --mode the merger chooses: in memory when the model fits, else shard by shard.
Both write the same bytes; this example merges both ways to show it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bedrock_ft import AdapterMerger, MergeConfig


def _train_small_adapter(work: Path) -> Path:
    from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig
    from bedrock_ft.data import build_synthetic_dataset

    dataset = build_synthetic_dataset(work / "dataset", n=80, tokenizer="embedded")
    training = TrainingConfig(
        output_dir=str(work / "run"), max_steps=4, max_length=256, per_device_batch_size=4,
        learning_rate=1e-3, warmup_ratio=0.0, save_steps=4, gradient_checkpointing=False,
    )  # fmt: skip
    QLoRATrainer(QLoRAConfig(), training, progress_bar=False).train(dataset)
    return work / "run"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--adapter", help="Training run directory or adapter directory.")
    parser.add_argument("--output-dir", help="Where the merge goes (default: a temp directory).")
    parser.add_argument("--mode", choices=["auto", "memory", "streaming"], default="auto")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--max-shard-size", default="2GB")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="merge-example-"))
    adapter = args.adapter or _train_small_adapter(work)
    config = MergeConfig(
        output_dir=args.output_dir or str(work / "merged"),
        mode=args.mode,
        dtype=args.dtype,
        max_shard_size=args.max_shard_size,
    )
    model = AdapterMerger(config, progress=print).merge(adapter)

    checks = model.merge.verification
    print(f"merged ({model.merge.mode}): {model.parameter_count:,} parameters, {model.dtype}")
    print(f"files: {', '.join(f.path for f in model.files)}")
    if checks is not None and checks.weights is not None:
        weights = checks.weights
        print(
            f"weights check: {len(weights.checked)} tensors within one {model.dtype} rounding of peft's merge"
        )
    if checks is not None and checks.logits is not None:
        logits = checks.logits
        print(
            f"logits check: max relative difference {logits.max_rel:.2g} <= {logits.tolerance:.2g}; "
            f"rounding costs {logits.error_vs_effect:.0%} of the adapter's effect"
        )
    print(f"preflight: {'passes' if model.preflight and model.preflight.ok else 'refused'}")
    print(f"chat template embedded: {model.chat_template is not None}")

    if args.adapter is None:  # the other mode, to compare: the same bytes
        other = "streaming" if model.merge.mode == "memory" else "memory"
        again = AdapterMerger(config.replace(output_dir=str(work / other), mode=other)).merge(adapter)
        same = [f.sha256 for f in again.files] == [f.sha256 for f in model.files]
        print(f"{other} merge writes the same bytes: {same}")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.model_dir)
    merged = AutoModelForCausalLM.from_pretrained(model.model_dir, dtype="auto")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 7 plus 5?"}], add_generation_prompt=True, return_tensors="pt"
    )
    out = merged.generate(prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True)
    print(f"reloaded with transformers, it answers: {answer!r}")


if __name__ == "__main__":
    main()
