"""QLoRATrainer: QLoRA (or LoRA) supervised fine-tuning on one device, with trl's SFTTrainer."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.artifacts import AdapterArtifact, DatasetArtifact, TrainMetrics
from bedrock_ft.errors import TrainingError
from bedrock_ft.progress import Progress, quiet, show_bar
from bedrock_ft.training._config import QLoRAConfig, TrainingConfig
from bedrock_ft.training._rundir import RunDir

if TYPE_CHECKING:
    from bedrock_ft.architectures import Architecture
    from bedrock_ft.training._model import Precision

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

        require("torch", "transformers", "peft", "trl", extra="train", feature="QLoRATrainer")
        if self.qlora.quantize:
            require("bitsandbytes", extra="train", feature="4-bit quantization (quantize=True)")
        if isinstance(dataset, str | os.PathLike):  # a path without a manifest: read() says so
            dataset = DatasetArtifact.from_input(dataset) or DatasetArtifact.read(os.fspath(dataset))
        t, q = self.training, self.qlora
        run = RunDir(t.output_dir)
        artifact = dataset if isinstance(dataset, DatasetArtifact) else None

        # Everything that can be checked without a model is checked first.
        model_path = _resolve_base(t.base_model, self._say)
        records = None
        if artifact is None:
            self._hf_dataset(None, dataset)  # a clear error for anything that is not a Dataset
        else:
            from bedrock_ft.training._data import load_messages

            self._say(f"reading the training split: {artifact.train_uri}")
            records = load_messages(artifact, work_dir=None)
        run_info = self._run_info(artifact, records, dataset, model_path)
        state = run.prepare(overwrite=t.overwrite, resume=t.resume, run_info=run_info)
        if state == "finished":
            self._say(f"{run.path}: this run already finished; returning its adapter")
            return AdapterArtifact.read(run.manifest)

        hw = self._setup(model_path, artifact, records, dataset)
        if state == "replace":
            self._say(f"overwrite: deleting the previous run in {run.path}")
            run.clear()
        if state in ("fresh", "replace"):
            run.write_run(run_info)
        resume_from = self._resume_point(run) if state == "resume" else None
        from bedrock_ft.training._model import build_model, lora_summary, quant_summary, resolve_attention

        self._say(
            f"loading {model_path} ({'4-bit ' + q.quant_type if q.quantize else 'unquantized'}, "
            f"{hw.precision.name}, {hw.device}, {resolve_attention(t, hw.device)}"
            f"{', liger-kernel' if hw.liger else ''})"
        )
        started = time.perf_counter()

        model = build_model(model_path, q, t, device=hw.device, precision=hw.precision, arch=hw.arch)
        trainer = self._sft_trainer(model, hw, run)
        self._say("training")
        result = self._fit(trainer, resume_from, hw.device)
        self._say(f"saving the adapter to {run.adapter}")
        self._save_adapter(trainer, hw.tokenizer, run)
        metrics = self._metrics(result, trainer, started, hw.device)
        out = AdapterArtifact(
            adapter_dir=str(run.adapter),
            base_model=model_path,  # resolved: a local directory's absolute path, or the hub id
            architecture=hw.arch.name if hw.arch else str(hw.model_config.get("model_type", "unknown")),
            lora=lora_summary(model),
            quantization=quant_summary(q, hw.precision.name) if q.quantize else None,
            train_metrics=metrics,
            checkpoint_dir=str(run.checkpoints),
            chat_template=hw.template,
            config_hash=run_info["run_hash"],
        )
        out.write(run.path)
        return AdapterArtifact.read(run.manifest)

    # --- steps ---------------------------------------------------------------------------------------

    def _setup(
        self,
        model_path: str,
        artifact: DatasetArtifact | None,
        records: list[dict[str, Any]] | None,
        dataset: Any,
    ) -> _Setup:
        """Everything decided before the model loads: device, dtype, memory, tokenizer, template, data."""
        from bedrock_ft.training._memory import check_memory, estimate_memory
        from bedrock_ft.training._model import (
            architecture_of,
            check_context,
            liger_enabled,
            read_model_config,
            resolve_device,
            resolve_precision,
        )

        t, q = self.training, self.qlora
        model_config = read_model_config(model_path)
        check_context(model_config, t.max_length)
        device = resolve_device(t.device)
        if device == "cpu":
            from bedrock_ft._system import configure_cpu_threads

            self._say(configure_cpu_threads())
        precision = resolve_precision(q.compute_dtype, device)
        liger = liger_enabled(t, device)
        check_memory(estimate_memory(model_config, q, t, precision.name), device, t)
        installed = importlib.util.find_spec("tensorboard") is not None
        if t.tensorboard and not installed:
            raise TrainingError("tensorboard=True but tensorboard is not installed: pip install tensorboard")
        tokenizer, template = self._tokenizer(model_path, artifact)
        if t.assistant_only_loss:
            from bedrock_ft.training._data import check_generation_template

            check_generation_template(template, artifact.chat_template_name if artifact else None, tokenizer)
        return _Setup(
            model_config=model_config,
            arch=architecture_of(model_config),
            device=device,
            precision=precision,
            liger=liger,
            tokenizer=tokenizer,
            template=template,
            data=self._hf_dataset(records, dataset),
            tensorboard=installed if t.tensorboard is None else t.tensorboard,
        )

    def _resume_point(self, run: RunDir) -> str | None:
        for dropped in run.drop_incomplete_checkpoints():
            self._say(f"removed incomplete checkpoint {dropped.name} (the run was killed while saving it)")
        last = run.last_checkpoint()
        if last is None:
            return None
        self._say(f"resuming from {last[1].name}")
        return str(last[1])

    def _run_info(
        self,
        artifact: DatasetArtifact | None,
        records: list[dict[str, Any]] | None,
        dataset: Any,
        model_path: str,
    ) -> dict[str, Any]:
        """What decides the run's result; its hash tells a resumable run from a different one."""
        if artifact is not None and records is not None:
            digest = hashlib.sha256()
            for record in records:  # content, not paths or timestamps: a rebuilt identical dataset matches
                digest.update(json.dumps(record, sort_keys=True).encode())
            digest.update((artifact.chat_template or "").encode())
            data_id: dict[str, Any] = {"train_uri": artifact.train_uri, "records": len(records),
                                       "sha256": digest.hexdigest()}  # fmt: skip
        else:
            data_id = {"in_memory": getattr(dataset, "_fingerprint", None) or str(len(dataset))}
        info = {
            "qlora": self.qlora.model_dump(mode="json"),
            "training": self.training.model_dump(mode="json", exclude=set(TrainingConfig.hash_exclude)),
            "dataset": data_id,
            "base_model_path": model_path,
        }
        identity = {
            "qlora": info["qlora"],
            "training": info["training"],
            "data": data_id.get("sha256", data_id),
        }
        blob = json.dumps(identity, sort_keys=True)
        info["run_hash"] = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return info

    def _tokenizer(self, model_path: str, artifact: DatasetArtifact | None) -> tuple[Any, str | None]:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(model_path)
        except (OSError, ValueError) as exc:
            raise TrainingError(f"base_model {model_path}: can't load its tokenizer: {exc}") from exc
        template = artifact.chat_template if artifact is not None else None
        if template:
            tokenizer.chat_template = template  # train with the template the dataset was built with
        else:
            own = tokenizer.chat_template
            template = own.get("default") if isinstance(own, dict) else own
        if artifact is not None and not template:
            raise TrainingError(
                "neither the dataset nor the base model's tokenizer has a chat template; rebuild the dataset "
                "with chat_template set (e.g. 'chatml')"
            )
        return tokenizer, template

    @staticmethod
    def _hf_dataset(records: list[dict[str, Any]] | None, dataset: Any) -> Any:
        if records is not None:
            from datasets import Dataset

            return Dataset.from_list(records)
        columns = getattr(dataset, "column_names", None)
        if not columns or not ({"messages", "input_ids"} & set(columns)):
            raise TrainingError(
                "train() takes a DatasetArtifact, its manifest path, or a datasets.Dataset with a 'messages' "
                f"or 'input_ids' column (got {type(dataset).__name__} with columns {columns})"
            )
        return dataset

    def _sft_trainer(self, model: Any, hw: _Setup, run: RunDir) -> Any:
        from trl import SFTConfig, SFTTrainer

        from bedrock_ft.training._model import keep_adapter_fp32
        from bedrock_ft.training._progress import TrainingMonitor

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
            gradient_accumulation_steps=t.gradient_accumulation_steps,
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
            # padding-free batches hold no pad tokens; otherwise count only the real ones
            include_num_input_tokens_seen=True if t.uses_padding_free else "non_padding",
            dataloader_num_workers=0,
            tf32=True if device == "cuda" and _tf32_available() else None,
            **hw.precision.trainer_flags,
        )
        self.monitor = TrainingMonitor(run.metrics, progress_bar=self.progress_bar, cuda=device == "cuda")
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*use_liger_kernel.*deprecated", category=FutureWarning
            )
            trainer = SFTTrainer(
                model=model,
                args=args,
                train_dataset=hw.data,
                processing_class=hw.tokenizer,
                callbacks=[self.monitor, *self.callbacks],
            )
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

    @staticmethod
    def _save_adapter(trainer: Any, tokenizer: Any, run: RunDir) -> None:
        from bedrock_ft._io import atomic_dir

        with atomic_dir(run.adapter, overwrite=True) as tmp:
            trainer.model.save_pretrained(str(tmp), safe_serialization=True)
            # The template in tokenizer_config.json, where transformers 4.x (and Bedrock) read it.
            tokenizer.save_pretrained(str(tmp), save_jinja_files=False)

    def _metrics(self, result: Any, trainer: Any, started: float, device: str) -> TrainMetrics:
        state = trainer.state
        metrics: dict[str, Any] = {
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


def _tf32_available() -> bool:
    from transformers.utils import is_torch_tf32_available

    return bool(is_torch_tf32_available())


def _resolve_base(base_model: str, say: Progress) -> str:
    from bedrock_ft.training._model import resolve_base_model

    if base_model == "embedded":
        say("base model: the embedded SmolLM2-135M-Instruct")
    return resolve_base_model(base_model)
