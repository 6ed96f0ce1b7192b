"""Wall time and peak RSS of each quickstart stage, measured from outside the process.

Runs the quickstart (``bedrock_ft._quickstart.run_quickstart``, in a fresh cache unless ``--cache`` is
given) in a child process whose progress callback prints each step with its time, samples the RSS of the
child's whole process tree (training, the local servers and fmeval's Ray workers included) every 0.2 s,
and splits the run into stages at the progress lines. Any version of the quickstart reports its steps
through that callback, so two versions compare in the same run (``PYTHONPATH=<other checkout>/src``)::

    python benchmarks/quickstart_stages.py                  # one cold run, then a warm one
    python benchmarks/quickstart_stages.py --runs 1 --json  # one cold run, as JSON
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

# The first line of each stage, in the quickstart's progress output (old and pipeline forms).
MARKERS = [
    ("model", re.compile(r"embedded model: looking in the cache|stage model\b")),
    ("dataset", re.compile(r"building the synthetic QA dataset|stage dataset\b")),
    ("train", re.compile(r"fine-tuning the embedded model|stage train\b")),
    ("merge", re.compile(r"merging the adapter|stage merge\b")),
    ("import", re.compile(r"starting the local S3|stage import\b")),
    ("invoke", re.compile(r"invoking the imported model|stage invoke\b")),
    ("evaluate", re.compile(r"importing the base model too|stage evaluate\b")),
]


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


CHILD = """
import sys
from bedrock_ft._quickstart import run_quickstart

def step(message):
    print(message, flush=True)

run_quickstart("What is the capital of France?", step=step)
"""


def measure(env: dict[str, str]) -> dict[str, dict[str, float]]:
    start = time.monotonic()
    cmd = [sys.executable, "-c", CHILD]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ps = psutil.Process(proc.pid)
    stages: dict[str, dict[str, float]] = {}
    current = ["startup"]
    stages["startup"] = {"start": 0.0, "peak_rss_mb": 0.0}
    lock = threading.Lock()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = _tree_rss(ps) / 2**20
            with lock:
                entry = stages[current[0]]
                entry["peak_rss_mb"] = max(entry["peak_rss_mb"], rss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        for name, pattern in MARKERS:
            if name not in stages and pattern.search(line):
                with lock:
                    current[0] = name
                    stages[name] = {"start": time.monotonic() - start, "peak_rss_mb": 0.0}
                break
    proc.wait()
    done.set()
    sampler.join()
    end = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"quickstart failed with exit status {proc.returncode}")
    names = list(stages)
    for i, name in enumerate(names):
        stop = stages[names[i + 1]]["start"] if i + 1 < len(names) else end
        stages[name]["seconds"] = round(stop - stages[name]["start"], 1)
        stages[name]["peak_rss_mb"] = round(stages[name]["peak_rss_mb"])
    stages["total"] = {
        "seconds": round(end, 1),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
    }
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2, help="1: a cold run; 2: a cold run, then a warm one.")
    parser.add_argument("--cache", type=Path, help="Cache directory (default: a fresh temporary one).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BEDROCK_FT_CACHE": str(args.cache or tmp)}
        results = [measure(env) for _ in range(args.runs)]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for label, stages in zip(("cold", "warm"), results, strict=False):
        print(f"{label} run: stage, seconds, peak RSS of the process tree (MiB)")
        for name, entry in stages.items():
            print(f"  {name:9} {entry['seconds']:7.1f} s {entry['peak_rss_mb']:8.0f} MiB")


if __name__ == "__main__":
    main()
