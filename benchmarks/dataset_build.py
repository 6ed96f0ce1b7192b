"""DatasetBuilder on 100k synthetic OpenOrca-shaped records: wall time and peak RSS.

    python benchmarks/dataset_build.py                  # 100,000 records
    python benchmarks/dataset_build.py --records 300000 --variants builder

Each variant runs in a fresh interpreter, so its peak RSS is its own:

- ``naive`` (the baseline): ``json.loads`` every line into a Python list, format, shuffle, write;
  what a notebook does, and what DatasetBuilder must not (its memory grows with the input);
- ``builder``: DatasetBuilder, no tokenizer (format, dedupe, split, write);
- ``builder+tokens``: DatasetBuilder with the embedded model's tokenizer and its chat template
  (adds rendering and token statistics for every record).

All variants keep every record (test_size=0.01), so each one handles the whole input.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VARIANTS = ("naive", "builder", "builder+tokens")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class AnonSampler(threading.Thread):
    """Peak anonymous RSS (heap, not memory-mapped files), sampled from /proc every 20 ms.

    ru_maxrss also counts the pages of memory-mapped files a process has read (the Arrow file
    DatasetBuilder maps); the kernel can drop those at any time, so they are reported apart.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.start_kib = self.peak_kib = self.anon_kib()
        self.stop = threading.Event()

    @staticmethod
    def anon_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak_kib = max(self.peak_kib, self.anon_kib())


def child(variant: str, source: Path, out: Path) -> dict[str, float]:
    """One measured run, in this process."""
    import datasets

    datasets.disable_progress_bars()
    from bedrock_ft.data import DatasetBuilder, DatasetConfig

    rss_before = _rss_mib()
    sampler = AnonSampler()
    sampler.start()
    start = time.perf_counter()
    if variant == "naive":
        with source.open() as fh:
            records = [json.loads(line) for line in fh]
        rows = []
        for r in records:
            messages = [{"role": "system", "content": r["system_prompt"]}] if r["system_prompt"] else []
            messages += [
                {"role": "user", "content": r["question"]},
                {"role": "assistant", "content": r["response"]},
            ]
            rows.append({"messages": messages})
        random.Random(42).shuffle(rows)
        n_test = len(rows) // 100
        out.mkdir(parents=True)
        for name, part in (("test_dataset.json", rows[:n_test]), ("train_dataset.json", rows[n_test:])):
            with (out / name).open("w") as fh:
                fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in part)
    else:
        config = DatasetConfig(
            source=str(source),
            format="openorca",
            test_size=0.01,
            seed=42,
            output=str(out),
            tokenizer="embedded" if variant == "builder+tokens" else None,
            work_dir=str(out.parent / "work"),
        )
        DatasetBuilder(config).build()
    elapsed = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    return {
        "build_s": elapsed,
        "rss_before_mib": rss_before,
        "peak_rss_mib": _rss_mib(),
        "peak_anon_mib": sampler.peak_kib / 1024,
        "anon_growth_mib": (sampler.peak_kib - sampler.start_kib) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SOURCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, source, out = args.child
        print(json.dumps(child(variant, Path(source), Path(out))))
        return

    from bedrock_ft.data import synthetic_openorca

    if "builder+tokens" in args.variants:
        from bedrock_ft.models import embedded_model

        embedded_model()  # fetched and converted before timing, never inside it
    with tempfile.TemporaryDirectory(prefix="bedrock-ft-bench-") as tmp:
        source = Path(tmp) / "openorca.jsonl"
        with source.open("w") as fh:
            for record in synthetic_openorca(args.records, seed=0):
                fh.write(json.dumps(record) + "\n")
        size_mib = source.stat().st_size / 2**20
        print(f"{args.records:,} OpenOrca-shaped records, {size_mib:.0f} MiB of JSONL")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        results = {}
        for variant in args.variants:
            out = Path(tmp) / variant.replace("+", "_") / "out"
            out.parent.mkdir()
            cmd = [sys.executable, __file__, "--child", variant, str(source), str(out)]
            wall = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - wall
            if proc.returncode != 0:
                sys.exit(f"{variant} failed:\n{proc.stderr}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["process_s"] = wall
            results[variant] = result
            print(
                f"{variant:>15}: build {result['build_s']:5.1f} s (process {wall:5.1f} s), "
                f"peak RSS {result['peak_rss_mib']:4.0f} MiB ({result['rss_before_mib']:.0f} after imports); "
                f"heap grew {result['anon_growth_mib']:4.0f} MiB"
            )
        if "naive" in results:
            base = results["naive"]
            for variant, r in results.items():
                if variant != "naive":
                    print(
                        f"{variant} vs naive: time x{r['build_s'] / base['build_s']:.2f}, "
                        f"peak RSS x{r['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
                    )
        print(json.dumps({"records": args.records, "jsonl_mib": round(size_mib, 1), "results": results}))


if __name__ == "__main__":
    main()
