"""CPU training next to another busy process: the quickstart's QLoRA run, quiet and under load.

Each variant trains the embedded model (SmolLM2-135M-Instruct) with the quickstart's settings for a few
steps in a fresh process (OpenMP reads its settings once, when torch loads), and reports the median
tokens/s after warm-up from the run's own metrics. The load is a second process doing CPU-bound torch
work on as many threads as there are cores (the harshest common case: two OpenMP programs on the same
cores), or a single-threaded Python loop.

Variants, in one run on the same machine:

- ``before``: threads and their wait policy left to torch and OpenMP (``BEDROCK_FT_THREADS=off``), what
  bedrock-ft did before it set them;
- ``default``: what bedrock-ft does now (threads sized to the usable CPUs, OpenMP threads that wait
  yield their core: ``OMP_WAIT_POLICY=PASSIVE``).

Each is measured quiet, then under each load, one after the other. Run it on a machine with nothing
else busy::

    python benchmarks/cpu_contention.py --steps 12
    python benchmarks/cpu_contention.py --loads quiet,torch --spin 1000,10000 --variants spin1000,spin10000

``--spin N`` adds OpenMP's default wait policy with libgomp spinning N rounds before it sleeps
(``GOMP_SPINCOUNT``). benchmarks/README.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOADS = {
    "quiet": None,
    "torch": (
        "import torch, os\n"
        "torch.set_num_threads(len(os.sched_getaffinity(0)))\n"
        "a = torch.randn(384, 384)\n"
        "while True:\n"
        "    (a @ a).sum()\n"
    ),
    "python": "while True:\n    pass\n",
}

VARIANTS: dict[str, dict[str, str]] = {
    "before": {"BEDROCK_FT_THREADS": "off"},
    "default": {},
}
"""More with --spin N: OpenMP's default wait, but spinning only N rounds (GOMP_SPINCOUNT) before sleeping."""


def _train(dataset: str, steps: int, out: str) -> None:
    """The child: one QLoRA run with the quickstart's settings; prints the run's metrics as JSON."""
    import bedrock_ft  # first, as users do: it sets the OpenMP policy before torch loads
    from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig

    training = TrainingConfig(
        output_dir=out, max_steps=steps, max_length=256, per_device_batch_size=4,
        gradient_checkpointing=False, learning_rate=1e-3, warmup_ratio=0.0, logging_steps=1,
        save_steps=10_000, tensorboard=False,
    )  # fmt: skip
    trainer = QLoRATrainer(QLoRAConfig(), training, progress_bar=False)
    adapter = trainer.train(dataset)
    monitor = trainer.monitor
    rates = [t / s for s, t in zip(monitor.step_seconds, monitor.step_tokens, strict=True)][2:]
    print("RESULT " + json.dumps({
        "tokens_per_second": statistics.median(rates),
        "steps": adapter.train_metrics.global_step,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "bedrock_ft": bedrock_ft.__version__,
    }))  # fmt: skip


def _measure(variant: dict[str, str], load: str, dataset: str, steps: int, work: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(variant)
    background = None
    if LOADS[load] is not None:
        load_env = {k: v for k, v in env.items() if k != "BEDROCK_FT_THREADS"}
        background = subprocess.Popen([sys.executable, "-c", LOADS[load]], env=load_env)
        time.sleep(2)  # let it get going
    try:
        out = tempfile.mkdtemp(dir=work)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", dataset, "--steps", str(steps), "--out", out],
            env=env, capture_output=True, text=True, check=False, timeout=3600,
        )  # fmt: skip
    finally:
        if background is not None:
            background.kill()
            background.wait()
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12, help="Optimizer steps per run (2 are warm-up).")
    parser.add_argument("--loads", default="quiet,torch,python", help="Which loads, comma-separated.")
    parser.add_argument("--out", type=Path, help="Write the results here as JSON.")
    parser.add_argument("--spin", default="", help="Also these GOMP_SPINCOUNT values, comma-separated.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per variant and load (the median).")
    parser.add_argument("--variants", default="", help="Only these variants, comma-separated.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child:
        _train(args.child, args.steps, str(args.out))
        return

    from bedrock_ft.data import build_synthetic_dataset
    from bedrock_ft.models import embedded_model

    work = Path(tempfile.mkdtemp(prefix="cpu-contention-"))
    tokenizer = str(embedded_model())
    dataset = build_synthetic_dataset(work / "data", n=300, seed=0, tokenizer=tokenizer, overwrite=True)
    for spin in filter(None, args.spin.split(",")):
        VARIANTS[f"spin{spin}"] = {"BEDROCK_FT_THREADS": "off", "GOMP_SPINCOUNT": spin}
    if args.variants:
        for name in set(VARIANTS) - set(args.variants.split(",")):
            del VARIANTS[name]
    results: dict[str, dict[str, Any]] = {}
    for load in args.loads.split(","):
        for name, variant in VARIANTS.items():
            runs = [_measure(variant, load, str(work / "data"), args.steps, work) for _ in range(args.repeat)]
            result = {**runs[0], "tokens_per_second": statistics.median(r["tokens_per_second"] for r in runs),
                      "runs": [r["tokens_per_second"] for r in runs]}  # fmt: skip
            results[f"{name}/{load}"] = result
            print(f"{name:8} {load:7} {result['tokens_per_second']:8.1f} tok/s {result['runs']}", flush=True)
    print()
    print("| variant | quiet tok/s | load | tok/s under load | share of quiet |")
    print("|---|---|---|---|---|")
    for name in VARIANTS:
        quiet = results.get(f"{name}/quiet", {}).get("tokens_per_second")
        for load in args.loads.split(","):
            if load == "quiet" or quiet is None:
                continue
            rate = results[f"{name}/{load}"]["tokens_per_second"]
            print(f"| {name} | {quiet:.0f} | {load} | {rate:.0f} | {rate / quiet:.0%} |")
    del dataset
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
