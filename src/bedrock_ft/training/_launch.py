"""backend='accelerate': plan a multi-process run, write its accelerate config, launch it, watch it.

The launcher runs in the user's process. It decides the world size and the strategy (DDP or
FSDP-QLoRA) with the memory estimate, writes ``launch/accelerate.yaml`` and ``launch/train.json``
into the run directory, and starts ``accelerate launch -m bedrock_ft.training.entrypoint
launch/train.json``: every rank runs the same entrypoint as a one-process run. Rank 0 sends its
progress as event lines (drawn here as the usual bar); the other ranks log to ``launch/rank-N.log``.

A failing rank stops the others (torchrun's agent does that), and its traceback, written to
``launch/error-rank-N.json``, comes back as a :class:`TrainingError`. Ctrl-C, or any error here,
stops the launcher and every process under it: nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bedrock_ft._io import atomic_write_text
from bedrock_ft.errors import TrainingError
from bedrock_ft.progress import Progress
from bedrock_ft.training._distributed import EVENT_PREFIX, LAUNCH_ENV, PARENT_ENV

if TYPE_CHECKING:
    from bedrock_ft.architectures import Architecture
    from bedrock_ft.training._config import QLoRAConfig, TrainingConfig
    from bedrock_ft.training._memory import MemoryEstimate

__all__ = ["LaunchPlan", "accelerate_config", "launch", "plan_launch", "wrap_layers"]

GiB = 1 << 30
_STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class LaunchPlan:
    """What the launcher decided before anything loads."""

    device: str  # cuda | cpu
    world_size: int
    strategy: str  # ddp | fsdp
    precision: str  # bfloat16 | float16 | float32
    qlora: QLoRAConfig  # as trained: FSDP needs the 4-bit storage dtype equal to the compute dtype
    estimate: MemoryEstimate | None

    def describe(self) -> str:
        where = "GPUs" if self.device == "cuda" else "CPU processes (gloo)"
        memory = f", {self.estimate.describe()} per rank" if self.estimate is not None else ""
        return f"{self.strategy.upper()} on {self.world_size} {where}, {self.precision}{memory}"


# --- planning --------------------------------------------------------------------------------------


def plan_launch(
    qlora: QLoRAConfig, training: TrainingConfig, model_config: Mapping[str, Any], say: Progress
) -> LaunchPlan:
    """World size, strategy and precision for ``training``; every impossible request is refused here,
    before a process starts, with what would work instead."""
    import torch

    from bedrock_ft.training._memory import estimate_memory
    from bedrock_ft.training._model import resolve_precision

    t = training
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if t.device == "cuda" and gpus == 0:
        raise TrainingError("device='cuda' but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    device = "cuda" if gpus and t.device != "cpu" else "cpu"
    if device == "cpu":
        if t.strategy == "fsdp":
            raise TrainingError(
                "strategy='fsdp' needs CUDA GPUs (FSDP-QLoRA shards the 4-bit weights across them) and this "
                "machine has none; use strategy='ddp' (or 'auto'), which runs CPU processes over gloo"
            )
        world = t.num_processes or 2
    else:
        world = t.num_processes or gpus
        if world > gpus:
            raise TrainingError(
                f"num_processes={world} but torch sees {gpus} GPU(s): one rank per GPU, so set num_processes "
                f"to {gpus} or fewer (or make more GPUs visible with CUDA_VISIBLE_DEVICES)"
            )
    t.accumulation_for(world)  # global_batch_size must divide across the ranks
    precision = resolve_precision(qlora.compute_dtype, device).name

    def estimate(strategy: str) -> MemoryEstimate | None:
        shards = world if strategy == "fsdp" else 1
        kept = t.uncheckpointed_layers if isinstance(t.uncheckpointed_layers, int) else 0  # auto fits itself
        return estimate_memory(model_config, qlora, t, precision, shards=shards, kept=kept)

    free = _free_per_rank(device, world)
    strategy = t.strategy
    if strategy == "auto":
        ddp = estimate("ddp")
        fits = ddp is None or ddp.total <= free
        strategy = "ddp" if device == "cpu" or fits or world == 1 else "fsdp"
    chosen = estimate(strategy)
    if t.memory_guard and chosen is not None and chosen.total > free:
        raise TrainingError(_no_fit(strategy, chosen, free, device, world, estimate, t))
    if strategy == "fsdp" and qlora.quantize and qlora.storage_dtype != precision:
        say(
            f"FSDP shards 4-bit weights only when they are stored in the compute dtype: storage_dtype set "
            f"to {precision} (was {qlora.storage_dtype}); set it yourself to silence this"
        )
        qlora = qlora.replace(storage_dtype=precision)
    return LaunchPlan(device, world, strategy, precision, qlora, chosen)


def _free_per_rank(device: str, world: int) -> int:
    """Free memory each rank may use: the least free GPU of the ones the ranks get; on CPU, the RAM
    shared by every rank."""
    if device == "cuda":
        import torch

        return min(int(torch.cuda.mem_get_info(i)[0]) for i in range(world))
    from bedrock_ft._system import available_memory

    return available_memory("cpu")[0] // world


def _no_fit(  # noqa: PLR0917 - one message from the planner's locals
    strategy: str,
    chosen: MemoryEstimate,
    free: int,
    device: str,
    world: int,
    estimate: Callable[[str], MemoryEstimate | None],
    t: TrainingConfig,
) -> str:
    where = "per GPU" if device == "cuda" else f"per process ({world} share the RAM)"
    text = f"strategy {strategy} needs {chosen.describe()} {where}, but {free / GiB:.1f} GiB is free"
    other = "fsdp" if strategy == "ddp" else "ddp"
    alternative = estimate(other) if device == "cuda" else None
    if alternative is not None and alternative.total <= free:
        return f"{text}. strategy='{other}' fits ({alternative.describe()}): set it, or lower the batch."
    return (
        f"{text}. Lower per_device_batch_size (now {t.per_device_batch_size}; global_batch_size or "
        f"gradient_accumulation_steps keep the effective batch) or max_length (now {t.max_length})"
        + ("" if device == "cpu" or strategy == "fsdp" else ", or use strategy='fsdp'")
        + (", turn gradient_checkpointing on" if not t.gradient_checkpointing else "")
        + ("" if device == "cpu" else ", or more GPUs")
        + "; or set memory_guard=False if you know better."
    )


# --- the accelerate config -------------------------------------------------------------------------


def wrap_layers(arch: Architecture | None, model_config: Mapping[str, Any]) -> list[str]:
    """The transformer-layer classes FSDP wraps: the architecture registry's, else the model class's
    own ``_no_split_modules``."""
    if arch is not None and arch.decoder_layers:
        return list(arch.decoder_layers)
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.auto_factory import _get_model_class

    try:
        config = AutoConfig.for_model(**dict(model_config))
        model_class = _get_model_class(config, AutoModelForCausalLM._model_mapping)
    except (KeyError, ValueError) as exc:
        raise TrainingError(
            f"strategy='fsdp': can't tell which layers to shard for model_type "
            f"{model_config.get('model_type')!r} ({exc}); register its architecture with decoder_layers"
        ) from None
    layers = list(getattr(model_class, "_no_split_modules", None) or [])
    if not layers:
        raise TrainingError(
            f"strategy='fsdp': {model_class.__name__} names no transformer layer class; register its "
            "architecture with decoder_layers"
        )
    return layers


def accelerate_config(plan: LaunchPlan, *, layers: list[str], port: int) -> dict[str, Any]:
    """The ``accelerate launch`` config for ``plan``: every key given, so accelerate guesses nothing."""
    mixed = {"bfloat16": "bf16", "float16": "fp16"}.get(plan.precision, "no")
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "MULTI_GPU",
        "num_processes": plan.world_size,
        "num_machines": 1,
        "machine_rank": 0,
        "main_process_port": port,
        "rdzv_backend": "static",
        "same_network": True,
        "mixed_precision": mixed if plan.device == "cuda" else "no",
        "downcast_bf16": "no",
        "use_cpu": False,
        "gpu_ids": "all",
        "main_training_function": "main",
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        "tpu_env": [],
        "dynamo_config": {},
    }
    if plan.strategy == "fsdp":
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_version": 1,
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_transformer_layer_cls_to_wrap": ",".join(layers),
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_forward_prefetch": False,
            # Sharded while training (checkpoints save fast, each rank its shard); the adapter is
            # gathered whole on rank 0 at the end.
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,  # rank 0 loads the weights; the others get them
            "fsdp_sync_module_states": True,
            "fsdp_use_orig_params": False,
            "fsdp_offload_params": False,
            "fsdp_activation_checkpointing": False,  # the model's own (non-reentrant) checkpointing
        }
    elif plan.world_size == 1:
        config["distributed_type"] = "NO"
    return config


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- running ---------------------------------------------------------------------------------------


def launch(
    plan: LaunchPlan,
    *,
    launch_dir: Path,
    train_file: Path,
    layers: list[str],
    say: Progress,
    progress_bar: bool,
) -> None:
    """Run every rank to the end; raise TrainingError with the failing rank's error."""
    for stale in launch_dir.glob("error-rank-*.json"):
        stale.unlink()
    config_file = launch_dir / "accelerate.yaml"
    import yaml

    threads = _threads_per_rank(plan)

    config = accelerate_config(plan, layers=layers, port=free_port())
    atomic_write_text(config_file, yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
        "-m", "bedrock_ft.training.entrypoint", str(train_file),
    ]  # fmt: skip
    env = dict(os.environ)
    env[LAUNCH_ENV] = str(launch_dir)
    env[PARENT_ENV] = str(os.getpid())  # each rank exits if this process dies
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    say(f"launching {plan.describe()}: accelerate launch --config_file {config_file}")
    with _Ranks(command, env, say=say, progress_bar=progress_bar) as ranks:
        code = ranks.wait()
    if code != 0:
        raise _failure(launch_dir, code, ranks.tail, plan.world_size)


def _threads_per_rank(plan: LaunchPlan) -> int | None:
    """CPU ranks split the usable CPUs between them (more threads than cores only slows every rank)."""
    from bedrock_ft._system import THREADS_ENV, usable_cpus

    if plan.device != "cpu" or os.environ.get(THREADS_ENV, "auto") == "off":
        return None
    return max(1, usable_cpus() // plan.world_size)


class _Ranks:
    """The launcher process and everything under it, with rank 0's events drawn in this console."""

    def __init__(self, command: list[str], env: dict[str, str], *, say: Progress, progress_bar: bool) -> None:
        self.command, self.env, self.say, self.progress_bar = command, env, say, progress_bar
        self.tail: deque[str] = deque(maxlen=80)
        self._lines: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._bar: Any = None
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> _Ranks:
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # stopped by us, as a whole, not by the terminal's Ctrl-C alone
        )
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))
        ]
        for reader in self._readers:
            reader.start()
        return self

    def _read(self, stream: IO[str] | None, name: str) -> None:
        assert stream is not None
        for line in stream:
            self._lines.put((name, line.rstrip("\n")))
        self._lines.put(None)

    def wait(self) -> int:
        assert self.proc is not None
        open_streams = len(self._readers)
        while open_streams:
            try:
                item = self._lines.get(timeout=0.5)  # a timeout keeps Ctrl-C prompt
            except queue.Empty:
                continue
            if item is None:
                open_streams -= 1
                continue
            self._handle(*item)
        return self.proc.wait()

    def _handle(self, stream: str, line: str) -> None:
        if stream == "out" and line.startswith(EVENT_PREFIX):
            with contextlib.suppress(ValueError):
                self._event(json.loads(line[len(EVENT_PREFIX) :]))
            return
        self.tail.append(line)
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "say":
            self.say(str(event.get("message", "")))
        elif kind == "start" and self.progress_bar:
            from bedrock_ft.training._progress import StepBar

            self._bar = StepBar(total=int(event.get("max_steps") or 0), done=int(event.get("step") or 0))
        elif kind == "step" and self._bar is not None:
            self._bar.update(int(event["step"]), event.get("loss"), event.get("rate"))
        elif kind == "end" and self._bar is not None:
            self._bar.close(int(event.get("step") or 0))
            self._bar = None

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.proc is not None:
            stop_tree(self.proc, interrupted=exc[0] is not None)


def stop_tree(proc: subprocess.Popen[str], *, interrupted: bool) -> None:
    """End the launcher and every process under it. Interrupted (Ctrl-C, an error here): SIGTERM to
    the launcher, whose agent stops the ranks, then SIGKILL for whatever is left after a grace period."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    if interrupted and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.1)
    for p in tree:
        with contextlib.suppress(psutil.Error):
            tree.extend(c for c in p.children(recursive=True) if c not in tree)
    for p in tree:
        if _alive(p):
            with contextlib.suppress(psutil.Error):
                p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _alive(p: Any) -> bool:
    import psutil

    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


_EXIT = re.compile(r"rank\s*:\s*(?P<rank>\d+).*?exitcode\s*:\s*(?P<code>-?\d+)", re.S)
_FAILED = re.compile(r"failed \(exitcode: (?P<code>-?\d+)\) local_rank: (?P<rank>\d+)")


def _failure(launch_dir: Path, code: int, tail: deque[str], world: int) -> TrainingError:
    """The error of the rank that failed first. A rank killed by a signal (OOM killer, kill -9) writes
    no error of its own, and the others then fail on the broken connection: it is the cause. Otherwise
    the first error a rank wrote, with its traceback; else torchrun's report."""
    text = "\n".join(tail)
    exits = {int(m["rank"]): int(m["code"]) for m in (*_EXIT.finditer(text), *_FAILED.finditer(text))}
    records = {}
    for path in launch_dir.glob("error-rank-*.json"):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text(encoding="utf-8"))
            records[int(record["rank"])] = record
    killed = sorted(r for r, c in exits.items() if c < 0 and c != -signal.SIGTERM and r not in records)
    if killed or not records:
        rank = killed[0] if killed else next(iter(sorted(exits)), None)
        if rank is None:
            error = TrainingError(f"the launcher exited with code {code} before training finished")
        else:
            died = _exit_text(exits[rank])
            error = TrainingError(f"rank {rank} of {world} died with {died}; the run stopped")
        _note(error, "last lines of the launch output:\n" + "\n".join(list(tail)[-25:]))
        _note(error, f"ranks' output: {launch_dir}/rank-N.log")
        return error
    first = min(records.values(), key=lambda r: float(r.get("time", 0)))
    message = first.get("message", "")
    if not first.get("training_error"):
        message = f"{first.get('type')}: {message}"
    error = TrainingError(f"rank {first['rank']} of {world} failed: {message}")
    error.rank_traceback = str(first.get("traceback", "")).rstrip()  # type: ignore[attr-defined]
    _note(error, f"rank {first['rank']}'s traceback:\n{error.rank_traceback}")  # type: ignore[attr-defined]
    _note(error, f"other ranks' output: {launch_dir}/rank-N.log")
    return error


def _exit_text(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if code == -signal.SIGKILL else ""
    return f"signal {name}{hint}"


def _note(error: BaseException, text: str) -> None:
    """Shown under the traceback (Python 3.11+)."""
    add = getattr(error, "add_note", None)
    if add is not None:
        add(text)
