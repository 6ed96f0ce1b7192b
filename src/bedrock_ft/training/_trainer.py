"""QLoRATrainer: QLoRA (or LoRA) supervised fine-tuning with trl's SFTTrainer, on one device or launched
across several processes (``backend='accelerate'``)."""

from __future__ import annotations

import importlib.util
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft._io import atomic_write_text
from bedrock_ft.artifacts import AdapterArtifact, DatasetArtifact, TrainMetrics
from bedrock_ft.errors import TrainingError
from bedrock_ft.progress import Progress, quiet, show_bar
from bedrock_ft.training._config import QLoRAConfig, TrainingConfig
from bedrock_ft.training._distributed import RankInfo, emit_event
from bedrock_ft.training._inputs import as_hf_dataset, load_tokenizer, read_dataset_input, run_info
from bedrock_ft.training._rundir import RunDir

if TYPE_CHECKING:
    from bedrock_ft.architectures import Architecture
    from bedrock_ft.training._launch import LaunchPlan
    from bedrock_ft.training._memory import KeptLayers
    from bedrock_ft.training._model import Precision
    from bedrock_ft.training._sm_watch import SageMakerJob


@dataclass(frozen=True)
class _Inputs:
    dataset: Any  # the DatasetArtifact or datasets.Dataset given
    artifact: DatasetArtifact | None
    records: list[dict[str, Any]] | None
    model_path: str
    info: dict[str, Any]  # run.json: what decides the result, and its hash
    run: RunDir


__all__ = ["QLoRATrainer"]


@dataclass(frozen=True)
class _Setup:
    model_config: dict[str, Any]
    arch: Architecture | None
    device: str
    precision: Precision
    liger: bool
    tokenizer: Any
    template: str | None
    data: Any
    tensorboard: bool
    kept: KeptLayers


class QLoRATrainer:
    """Fine-tune ``training.base_model`` with a LoRA adapter on a 4-bit (or full-precision) base.

    ``train(dataset)`` takes a :class:`~bedrock_ft.artifacts.DatasetArtifact` (or the path of its
    manifest), or a ``datasets.Dataset`` with a ``messages`` or an ``input_ids`` column, and returns
    an :class:`~bedrock_ft.artifacts.AdapterArtifact` written to ``training.output_dir``.

    ``progress`` receives one line per stage (loading, training, saving); ``progress_bar`` shows a
    live bar with loss, tokens/s and ETA (None: when stderr is a terminal); ``callbacks`` are extra
    ``transformers.TrainerCallback``\\ s.
    """

    def __init__(
        self,
        qlora: QLoRAConfig | None = None,
        training: TrainingConfig | None = None,
        *,
        progress: Progress | None = None,
        progress_bar: bool | None = None,
        callbacks: Sequence[Any] = (),
    ) -> None:
        self.qlora = qlora or QLoRAConfig()
        self.training = training or TrainingConfig()
        self._say: Progress = progress or quiet
        self.progress_bar = show_bar(progress_bar)
        self.callbacks = list(callbacks)
        self.monitor: Any = None  # the TrainingMonitor of the last run: step times, tokens, losses

    # --- public --------------------------------------------------------------------------------------

    def train(self, dataset: DatasetArtifact | str | Path | Any) -> AdapterArtifact:
        from bedrock_ft._deps import require
        from bedrock_ft.training._distributed import launched_rank

        t = self.training
        if t.backend == "sagemaker":  # the job trains: this machine needs no torch
            result = self._sagemaker(self._inputs(read_dataset_input(dataset)), wait=True)
            assert isinstance(result, AdapterArtifact)
            return result
        require("torch", "transformers", "peft", "trl", extra="train", feature="QLoRATrainer")
        if self.qlora.quantize:
            require("bitsandbytes", extra="train", feature="4-bit quantization (quantize=True)")
        rank = launched_rank()
        inputs = self._inputs(read_dataset_input(dataset))
        if rank is not None:  # one rank of a launched run: the launcher prepared the run directory
            inputs.run.check_same_run(inputs.info)
            return self._train_here(inputs, self._resume_point(inputs.run, drop=False), rank)
        plan = None
        if t.backend == "accelerate":
            from bedrock_ft.training._launch import plan_launch

            if self.callbacks:
                raise TrainingError(
                    "callbacks run in this process, and backend='accelerate' trains in other processes: "
                    "drop them, or use backend='local'; each rank logs to launch/rank-N.steps.jsonl"
                )

            plan = plan_launch(self.qlora, t, read_model_config(inputs.model_path), self._say)
            self.qlora = plan.qlora  # FSDP may have set the storage dtype: the run's identity follows it
            inputs = replace(inputs, info=self._run_info(inputs.dataset, inputs.artifact, inputs.records,
                                                         inputs.model_path))  # fmt: skip
        run = inputs.run
        state = run.prepare(overwrite=t.overwrite, resume=t.resume, run_info=inputs.info)
        world = plan.world_size if plan is not None else 1
        if state == "finished":
            self._say(f"{run.path}: this run already finished; returning its adapter")
            return AdapterArtifact.read(run.manifest)
        if state == "resume":
            _check_world(run, world)
        if plan is None:
            hw = self._setup(inputs, rank=None)  # every check that needs no model, before deleting anything
        if state == "replace":
            self._say(f"overwrite: deleting the previous run in {run.path}")
            run.clear()
        if state in ("fresh", "replace"):
            run.write_run({**inputs.info, "world_size": world, "backend": t.backend,
                           "strategy": plan.strategy if plan else None})  # fmt: skip
        resume_from = self._resume_point(run, drop=True) if state == "resume" else None
        if plan is None:
            return self._train_here(inputs, resume_from, None, hw=hw)
        return self._launch(inputs, plan)

    def submit(self, dataset: DatasetArtifact | str | Path | Any) -> SageMakerJob:
        """backend='sagemaker' without waiting: the training job, submitted (or re-attached, when this
        run's job is still running). ``job.wait(output_dir=...)`` later returns the adapter."""
        if self.training.backend != "sagemaker":
            raise TrainingError(
                f"submit() is for backend='sagemaker' (this run's is {self.training.backend!r})"
            )
        from bedrock_ft.training._sm_watch import SageMakerJob

        inputs = self._inputs(read_dataset_input(dataset))
        result = self._sagemaker(inputs, wait=False)
        if not isinstance(result, SageMakerJob):
            raise TrainingError(f"{inputs.run.path}: this run already finished; its adapter is there")
        return result

    def _sagemaker(self, inputs: _Inputs, *, wait: bool) -> AdapterArtifact | SageMakerJob:
        from bedrock_ft._deps import require
        from bedrock_ft.training._sagemaker import run_on_sagemaker

        require("sagemaker", extra="sagemaker", feature="backend='sagemaker'")
        if self.callbacks:
            raise TrainingError(
                "callbacks run in this process, and backend='sagemaker' trains in a job: drop them"
            )
        return run_on_sagemaker(self.qlora, self.training, artifact=inputs.artifact, dataset=inputs.dataset,
                                info=inputs.info, say=self._say, wait=wait)  # fmt: skip

    # --- inputs --------------------------------------------------------------------------------------

    def _inputs(self, dataset: Any) -> _Inputs:
        """Everything that can be read and checked without a model."""
        artifact = dataset if isinstance(dataset, DatasetArtifact) else None
        model_path = _resolve_base(self.training.base_model, self._say)
        records: list[dict[str, Any]] | None = None
        if artifact is None:
            as_hf_dataset(None, dataset)  # a clear error for anything that is not a Dataset
        else:
            from bedrock_ft.training._data import load_messages

            self._say(f"reading the training split: {artifact.train_uri}")
            records = load_messages(artifact, work_dir=None)
        info = self._run_info(dataset, artifact, records, model_path)
        return _Inputs(dataset, artifact, records, model_path, info, RunDir(self.training.output_dir))

    def _run_info(
        self,
        dataset: Any,
        artifact: DatasetArtifact | None,
        records: list[dict[str, Any]] | None,
        model_path: str,
    ) -> dict[str, Any]:
        return run_info(qlora=self.qlora, training=self.training, artifact=artifact, records=records,
                        dataset=dataset, model_path=model_path)  # fmt: skip

    def _launch(self, inputs: _Inputs, plan: LaunchPlan) -> AdapterArtifact:
        """backend='accelerate': the ranks run this same trainer, through the training entrypoint."""
        from bedrock_ft.architectures import architecture_for_config
        from bedrock_ft.errors import RegistryError
        from bedrock_ft.training._launch import launch, wrap_layers

        run = inputs.run
        launch_dir = run.path / "launch"
        launch_dir.mkdir(parents=True, exist_ok=True)
        if inputs.artifact is not None:
            dataset_input = str(inputs.artifact.write(launch_dir / "dataset"))
        else:
            saved = launch_dir / "hf-dataset"
            inputs.dataset.save_to_disk(str(saved))
            dataset_input = str(saved)
        # The ranks continue the prepared run: resume (hash-neutral) and no guard (checked here).
        training = self.training.replace(resume=True, overwrite=False, memory_guard=False)
        train_file = launch_dir / "train.json"
        settings = {
            "dataset": dataset_input,
            "qlora": self.qlora.model_dump(mode="json"),
            "training": training.model_dump(mode="json"),
        }
        atomic_write_text(train_file, json.dumps(settings, indent=2) + "\n")
        layers: list[str] = []
        if plan.strategy == "fsdp":
            config = read_model_config(inputs.model_path)
            try:
                arch = architecture_for_config(config)
            except RegistryError:
                arch = None
            layers = wrap_layers(arch, config)
        launch(plan, launch_dir=launch_dir, train_file=train_file, layers=layers, say=self._say,
               progress_bar=self.progress_bar)  # fmt: skip
        if not run.finished:
            raise TrainingError(f"the ranks exited without writing {run.manifest}")
        return AdapterArtifact.read(run.manifest)

    def _train_here(
        self, inputs: _Inputs, resume_from: str | None, rank: RankInfo | None, *, hw: _Setup | None = None
    ) -> AdapterArtifact:
        """Train in this process: the one-device run, or one rank of a launched one."""
        from bedrock_ft.training._model import (
            attention_label,
            build_model,
            lora_summary,
            quant_summary,
            resolve_attention,
        )

        t, q, run = self.training, self.qlora, inputs.run
        hw = hw or self._setup(inputs, rank=rank)
        attention = attention_label(resolve_attention(t, hw.device, hw.model_config), hw.model_config)
        self._say(
            f"loading {inputs.model_path} ({'4-bit ' + q.quant_type if q.quantize else 'unquantized'}, "
            f"{hw.precision.name}, {hw.device}, {attention}"
            f"{', liger-kernel' if hw.liger else ''})"
        )
        started = time.perf_counter()
        model = build_model(inputs.model_path, q, t, device=hw.device, precision=hw.precision, arch=hw.arch,
                            rank=rank, model_config=hw.model_config, say=self._say)  # fmt: skip
        trainer = self._sft_trainer(model, hw, run, rank)
        if hw.kept.line:
            self._say(hw.kept.line)
        self._say("training")
        result = self._fit(trainer, resume_from, hw.device)
        self._say(f"saving the adapter to {run.adapter}")
        _save_adapter(trainer, hw.tokenizer, run, rank)
        if rank is not None and not rank.is_main:
            trainer.accelerator.wait_for_everyone()  # rank 0 writes the manifest
            return AdapterArtifact.read(run.manifest)
        metrics = self._metrics(result, trainer, started, hw.device, rank)
        out = AdapterArtifact(
            adapter_dir=str(run.adapter),
            base_model=inputs.model_path,  # resolved: a local directory's absolute path, or the hub id
            architecture=hw.arch.name if hw.arch else str(hw.model_config.get("model_type", "unknown")),
            lora=lora_summary(model),
            quantization=quant_summary(q, hw.precision.name) if q.quantize else None,
            train_metrics=metrics,
            checkpoint_dir=str(run.checkpoints),
            chat_template=hw.template,
            config_hash=inputs.info["run_hash"],
        )
        out.write(run.path)
        if rank is not None:
            trainer.accelerator.wait_for_everyone()
        return AdapterArtifact.read(run.manifest)

    # --- steps ---------------------------------------------------------------------------------------

    def _setup(self, inputs: _Inputs, *, rank: RankInfo | None) -> _Setup:
        """Everything decided before the model loads: device, dtype, memory, tokenizer, template, data."""
        from bedrock_ft._system import available_memory
        from bedrock_ft.training._fused import forced_but_blocked, fused_lora_blocker
        from bedrock_ft.training._memory import check_memory, estimate_memory, kept_layers
        from bedrock_ft.training._model import (
            architecture_of,
            check_context,
            liger_enabled,
            resolve_device,
            resolve_precision,
        )

        t, q = self.training, self.qlora
        model_config = read_model_config(inputs.model_path)
        check_context(model_config, t.max_length)
        device = resolve_device(t.device, rank=rank)
        if device == "cpu" and rank is not None:
            from bedrock_ft.training._distributed import accept_indexed_cpu

            accept_indexed_cpu()
        if device == "cpu":
            from bedrock_ft._system import configure_cpu_threads

            self._say(configure_cpu_threads())
        precision = resolve_precision(q.compute_dtype, device)
        liger = liger_enabled(t, device)
        if t.fused_lora and (blocker := fused_lora_blocker(q, t, device, rank)):  # before the slow load
            raise forced_but_blocked(blocker)
        available = available_memory(device) if device == "cuda" else None  # read once, used twice
        kept = kept_layers(
            model_config, q, t, precision.name, device, free=available[0] if available else None
        )
        if rank is None:  # a launched run's memory was checked by the launcher, per strategy
            estimate = estimate_memory(model_config, q, t, precision.name, kept=kept.count)
            check_memory(estimate, device, t, available)
        installed = importlib.util.find_spec("tensorboard") is not None
        if t.tensorboard and not installed:
            raise TrainingError("tensorboard=True but tensorboard is not installed: pip install tensorboard")
        tokenizer, template = load_tokenizer(inputs.model_path, inputs.artifact)
        if t.assistant_only_loss:
            from bedrock_ft.training._data import check_generation_template

            artifact = inputs.artifact
            check_generation_template(template, artifact.chat_template_name if artifact else None, tokenizer)
        return _Setup(
            model_config=model_config,
            arch=architecture_of(model_config),
            device=device,
            precision=precision,
            liger=liger,
            tokenizer=tokenizer,
            template=template,
            data=as_hf_dataset(inputs.records, inputs.dataset),
            tensorboard=installed if t.tensorboard is None else t.tensorboard,
            kept=kept,
        )

    def _resume_point(self, run: RunDir, *, drop: bool) -> str | None:
        if drop:  # by the launcher (or a one-process run), before any rank looks
            for dropped in run.drop_incomplete_checkpoints():
                self._say(f"removed incomplete checkpoint {dropped.name} (the run was killed saving it)")
        last = run.last_checkpoint()
        if last is None:
            return None
        self._say(f"resuming from {last[1].name}")
        return str(last[1])

    def _sft_trainer(self, model: Any, hw: _Setup, run: RunDir, rank: RankInfo | None) -> Any:
        from trl import SFTConfig

        from bedrock_ft.training._model import keep_adapter_fp32
        from bedrock_ft.training._progress import RankLog, TrainingMonitor
        from bedrock_ft.training._sft import sft_trainer_class

        t, device = self.training, hw.device
        args = SFTConfig(
            output_dir=str(run.checkpoints),
            max_length=t.max_length,
            packing=t.packing,
            packing_strategy=t.packing_strategy,
            padding_free=t.uses_padding_free,
            assistant_only_loss=t.assistant_only_loss,
            num_train_epochs=t.num_epochs,
            max_steps=t.max_steps or -1,
            learning_rate=t.learning_rate,
            lr_scheduler_type=t.lr_scheduler,
            warmup_ratio=t.warmup_ratio,
            weight_decay=t.weight_decay,
            max_grad_norm=t.max_grad_norm,
            per_device_train_batch_size=t.per_device_batch_size,
            gradient_accumulation_steps=t.accumulation_for(rank.world_size if rank else 1),
            gradient_checkpointing=t.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
            seed=t.seed,
            data_seed=t.seed,
            save_strategy="steps",
            save_steps=t.save_steps,
            save_total_limit=t.save_total_limit,
            logging_steps=t.logging_steps,
            logging_dir=str(run.tensorboard),
            report_to=["tensorboard"] if hw.tensorboard else "none",
            use_liger_kernel=hw.liger,
            use_cpu=device == "cpu",
            disable_tqdm=True,
            # transformers' filter tests each step's loss for nan/inf with a Python bool, which makes the
            # CPU wait for the backward to finish before it queues clipping and the optimizer (the GPU
            # then idles while it does); a diverged loss shows as nan in the logs instead of being averaged
            logging_nan_inf_filter=False,
            # padding-free batches hold no pad tokens; otherwise count only the real ones
            include_num_input_tokens_seen=True if t.uses_padding_free else "non_padding",
            dataloader_num_workers=0,
            ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient every step
            ddp_backend="gloo" if rank is not None and device == "cpu" else None,
            tf32=True if device == "cuda" and _tf32_available() else None,
            **hw.precision.trainer_flags,
        )
        main = rank is None or rank.is_main
        self.monitor = TrainingMonitor(
            run.metrics,
            progress_bar=self.progress_bar and rank is None,
            cuda=device == "cuda",
            emit=emit_event if rank is not None and rank.is_main else None,
            enabled=main,  # one rank writes metrics.jsonl
        )
        callbacks: list[Any] = [self.monitor, *self.callbacks]
        if hw.kept.count:
            from bedrock_ft.training._model import keep_activations

            callbacks.append(keep_activations(hw.kept.count))
        rank_log = RankLog(rank.launch_dir / f"rank-{rank.rank}.steps.jsonl") if rank is not None else None
        if rank_log is not None:
            callbacks.append(rank_log)
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*use_liger_kernel.*deprecated", category=FutureWarning
            )
            trainer = sft_trainer_class()(  # trl's SFTTrainer, whose step doesn't wait on its metrics
                model=model,
                args=args,
                train_dataset=hw.data,
                processing_class=hw.tokenizer,
                callbacks=callbacks,
            )
        if rank_log is not None:
            trainer.data_collator = rank_log.watch(trainer.data_collator)
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # logs go to metrics.jsonl and the progress bar instead
        keep_adapter_fp32(trainer.model)  # trl casts QLoRA adapters to bf16; keep float32 master weights
        return trainer

    def _fit(self, trainer: Any, resume_from: str | None, device: str) -> Any:
        import torch

        try:
            return trainer.train(resume_from_checkpoint=resume_from)
        except torch.OutOfMemoryError as exc:
            step = trainer.state.global_step
            t = self.training
            where = "GPU" if device == "cuda" else "memory"
            if not t.gradient_checkpointing:
                advice = (
                    "turn gradient_checkpointing on and resume=True continues from the last checkpoint; "
                    "or lower "
                )
            else:
                advice = "lower "
            raise TrainingError(
                f"out of {where} at step {step}: {advice}per_device_batch_size (now "
                f"{t.per_device_batch_size}; raise gradient_accumulation_steps to keep the effective batch) "
                f"or max_length (now {t.max_length}). A smaller batch or max_length is a new run: use "
                "another output_dir or overwrite=True. Checkpoints saved so far are kept."
            ) from exc
        finally:
            if self.monitor is not None:
                self.monitor.close()

    def _metrics(
        self, result: Any, trainer: Any, started: float, device: str, rank: RankInfo | None
    ) -> TrainMetrics:
        state = trainer.state
        metrics: dict[str, Any] = {
            "world_size": rank.world_size if rank else 1,
            "strategy": (("fsdp" if rank.fsdp else "ddp") if rank else None),
            "global_step": state.global_step,
            "train_seconds": round(time.perf_counter() - started, 2),
            "tokens_seen": float(getattr(state, "num_input_tokens_seen", 0) or 0),
        }
        losses = [float(e["loss"]) for e in state.log_history if "loss" in e]
        if losses:  # from the log: the Trainer's own average is wrong after a resume
            metrics["train_loss"] = round(sum(losses) / len(losses), 4)
            metrics["first_loss"] = losses[0]
            metrics["final_loss"] = losses[-1]
        elif result.training_loss:  # fewer steps than logging_steps: the Trainer's average
            metrics["train_loss"] = round(float(result.training_loss), 4)
        rate = self.monitor.tokens_per_second() if self.monitor else None
        if rate:
            metrics["tokens_per_second"] = round(rate, 1)
        if device == "cuda":
            import torch

            metrics["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        return TrainMetrics(**metrics)


def _save_adapter(trainer: Any, tokenizer: Any, run: RunDir, rank: RankInfo | None) -> None:
    """The adapter, written atomically by one process. Under FSDP every rank takes part in gathering
    the full (unsharded) adapter onto rank 0 first."""
    from bedrock_ft._io import atomic_dir

    state = None
    if rank is not None and rank.fsdp:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        state = trainer.accelerator.get_state_dict(trainer.model)
    if rank is not None and not rank.is_main:
        return
    if state is not None:
        state = _adapter_tensors(state)
    model = trainer.accelerator.unwrap_model(trainer.model) if rank is not None else trainer.model
    with atomic_dir(run.adapter, overwrite=True) as tmp:
        if state is None:
            model.save_pretrained(str(tmp), safe_serialization=True)
        else:  # the gathered tensors, in peft's own file layout
            from safetensors.torch import save_file

            model.peft_config["default"].save_pretrained(str(tmp))
            save_file(state, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        # The template in tokenizer_config.json, where transformers 4.x (and Bedrock) read it.
        tokenizer.save_pretrained(str(tmp), save_jinja_files=False)


def _adapter_tensors(state: dict[str, Any]) -> dict[str, Any]:
    """The LoRA tensors of FSDP's gathered state dict, under the names peft gives them (FSDP's wrapper
    segments removed): the 4-bit base weights gathered with them are not the adapter's."""
    wrappers = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
    cleaned = {}
    for key, value in state.items():
        name = key
        for wrapper in wrappers:
            name = name.replace(wrapper, "")
        if "lora_" in name:
            # peft's saved names: under base_model.model., without the adapter's name
            name = name.replace(".default.", ".")
            if not name.startswith("base_model.model."):
                name = "base_model.model." + name
            cleaned[name] = value.detach().to("cpu").contiguous()
    if not cleaned or any(v.numel() == 0 for v in cleaned.values()):
        sample = ", ".join(list(state)[:8])
        raise TrainingError(
            f"FSDP gathered no LoRA weights on rank 0 ({len(state)} tensors: {sample}, ...); the adapter "
            "can't be saved. The last checkpoint holds the sharded training state."
        )
    return cleaned


def _check_world(run: RunDir, world: int) -> None:
    """A run resumes with the world size it started with: its checkpoints hold one RNG state and one
    data position per rank."""
    previous = run.read_run().get("world_size", 1)
    if previous != world:
        raise TrainingError(
            f"output_dir {run.path}: this run trained with {previous} process(es) and would resume with "
            f"{world}; resume it with the same num_processes ({previous}), or start over with "
            "overwrite=True"
        )


def _tf32_available() -> bool:
    from transformers.utils import is_torch_tf32_available

    return bool(is_torch_tf32_available())


def read_model_config(model_path: str) -> dict[str, Any]:
    from bedrock_ft.training._model import read_model_config as read

    return read(model_path)


def _resolve_base(base_model: str, say: Progress) -> str:
    from bedrock_ft.training._model import resolve_base_model

    if base_model == "embedded":
        say("base model: the embedded SmolLM2-135M-Instruct")
    return resolve_base_model(base_model)
