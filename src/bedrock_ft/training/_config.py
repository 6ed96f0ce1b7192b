"""QLoRAConfig and TrainingConfig: what is trained, and how.

``QLoRAConfig`` holds the quantization and adapter settings (they travel with the adapter);
``TrainingConfig`` the run: base model, data shaping, schedule, checkpoints and the fast-path
switches. Both are light: importing them imports no torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bedrock_ft.config import BaseConfig, StageFile
from bedrock_ft.training._sagemaker_config import SageMakerConfig

__all__ = ["TRAIN_LAYOUT", "ComputeDtype", "QLoRAConfig", "TrainingConfig"]

ComputeDtype = Literal["auto", "bfloat16", "float16", "float32"]


Attention = Literal["auto", "varlen", "sdpa", "eager", "flash_attention_2", "flex_attention"]


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("training_config", "{message}", {"message": message})


class QLoRAConfig(BaseConfig):
    """4-bit quantization of the frozen base, and the LoRA adapter trained on top of it.

    The defaults are the fast recipe: nf4 with double quantization, LoRA r=16 on every linear
    layer of the architecture, no dropout. ``QLoRAConfig.seed_recipe()`` is the seed's exact recipe.
    ``quantize=False`` trains plain LoRA on an unquantized base.
    """

    # --- quantization ------------------------------------------------------------------------------
    quantize: bool = Field(
        default=True, description="Load the base in 4 bits (QLoRA); False gives plain LoRA."
    )
    quant_type: Literal["nf4", "fp4"] = Field(
        default="nf4", description="4-bit data type (bnb_4bit_quant_type)."
    )
    double_quant: bool = Field(
        default=True, description="Quantize the quantization constants too (bnb_4bit_use_double_quant)."
    )
    compute_dtype: ComputeDtype = Field(
        default="auto",
        description="Dtype the forward and backward run in (and, without quantize, the base weights' dtype). "
        "auto: bfloat16 on GPUs that have it, else float16; float32 on CPU. bfloat16 asked for on hardware "
        "without it falls back, with a warning.",
    )
    storage_dtype: Literal["uint8", "bfloat16", "float16", "float32"] = Field(
        default="uint8",
        description="Dtype the packed 4-bit weights are stored as (bnb_4bit_quant_storage). FSDP needs it to "
        "match the compute dtype; a single device doesn't care.",
    )

    # --- LoRA --------------------------------------------------------------------------------------
    r: int = Field(default=16, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(default=32.0, gt=0, description="LoRA alpha; the update is scaled by alpha / r.")
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input. 0 is faster and rarely worse."
    )
    target_modules: tuple[str, ...] | Literal["all-linear"] | None = Field(
        default=None,
        description="Modules to adapt: module names, or 'all-linear'. Default: the architecture's own list "
        "(every attention and MLP projection), else all-linear.",
    )
    bias: Literal["none", "all", "lora_only"] = Field(default="none", description="Which biases to train.")

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        if isinstance(value, tuple) and (not value or any(not m.strip() for m in value)):
            raise _problem("give at least one module name, 'all-linear', or leave it empty for the default")
        return value

    @classmethod
    def seed_recipe(cls, **overrides: Any) -> QLoRAConfig:
        """The seed's exact recipe: r=16, alpha=8, dropout 0.05, all-linear, nf4, double quant, bf16
        compute and storage."""
        settings: dict[str, Any] = {
            "quantize": True,
            "quant_type": "nf4",
            "double_quant": True,
            "compute_dtype": "bfloat16",
            "storage_dtype": "bfloat16",
            "r": 16,
            "alpha": 8.0,
            "dropout": 0.05,
            "target_modules": "all-linear",
            "bias": "none",
        }
        return cls(**{**settings, **overrides})


class TrainingConfig(BaseConfig):
    """One supervised fine-tuning run (``QLoRATrainer(qlora, training).train(dataset)``)."""

    # --- model and output --------------------------------------------------------------------------
    base_model: str = Field(
        default="embedded",
        description="Base model: a local directory (config.json + safetensors), a hub id, or 'embedded' "
        "(the bundled SmolLM2-135M-Instruct).",
    )
    output_dir: str = Field(
        default="bedrock-ft-runs/adapter",
        description="Run directory: the adapter, checkpoints, metrics.jsonl and manifest.json go here.",
    )
    overwrite: bool = Field(default=False, description="Delete a previous run in output_dir and start over.")
    resume: bool = Field(
        default=False,
        description="Continue an interrupted run from its last complete checkpoint (a finished run is "
        "returned as it is).",
    )

    # --- data shaping ------------------------------------------------------------------------------
    max_length: int = Field(default=2048, ge=8, description="Tokens per training sequence (trl max_length).")
    packing: bool = Field(
        default=True, description="Pack several records into each sequence (best-fit decreasing)."
    )
    packing_strategy: Literal["bfd", "wrapped"] = Field(
        default="bfd",
        description="bfd: whole records, best-fit decreasing, padding-free. wrapped: records concatenated "
        "and cut every max_length tokens (the seed's, older trl's ConstantLengthDataset).",
    )
    padding_free: bool | None = Field(
        default=None,
        description="Padding-free batches (one flat sequence with position ids, no pad tokens). Default: on "
        "with bfd packing.",
    )
    assistant_only_loss: bool = Field(
        default=False,
        description="Train only on assistant turns. Needs a chat template with {% generation %} blocks.",
    )

    # --- schedule ----------------------------------------------------------------------------------
    num_epochs: float = Field(default=1.0, gt=0, description="Passes over the training split.")
    max_steps: int | None = Field(
        default=None, ge=1, description="Stop after this many optimizer steps (overrides num_epochs)."
    )
    learning_rate: float = Field(default=2e-4, gt=0, lt=1, description="Peak learning rate.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    per_device_batch_size: int = Field(default=4, ge=1, description="Sequences per forward pass.")
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, description="Forward passes per optimizer step."
    )
    gradient_checkpointing: bool = Field(
        default=True, description="Recompute activations in the backward pass: far less memory, ~30% slower."
    )
    uncheckpointed_layers: int | Literal["auto"] = Field(
        default="auto",
        description="With gradient_checkpointing: how many of the last layers keep their activations instead "
        "of recomputing them (each spares a layer's recomputation for a layer's activations in memory). "
        "auto: on a CUDA GPU, as many as the memory a plain LM head's logits would take (bedrock-ft's loss "
        "never holds them), so the peak stays under a plain transformers step's; 0 elsewhere.",
    )
    seed: int = Field(default=42, description="Seed of the data order and the adapter's initialization.")

    # --- where it runs ------------------------------------------------------------------------------
    backend: Literal["local", "accelerate", "sagemaker"] = Field(
        default="local",
        description="local: train in this process, on one device. accelerate: start num_processes ranks with "
        "`accelerate launch` (one per GPU, or gloo processes on CPU), all running "
        "`python -m bedrock_ft.training.entrypoint`. sagemaker: run that entrypoint in a SageMaker training "
        "job (the `sagemaker` section), on every GPU of its instance.",
    )
    sagemaker: SageMakerConfig | None = Field(
        default=None, description="The SageMaker training job, for backend='sagemaker' (docs/sagemaker.md)."
    )
    num_processes: int | None = Field(
        default=None,
        ge=1,
        description="Ranks for backend='accelerate'. Default: every visible GPU; on a CPU-only machine, 2.",
    )
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        default="auto",
        description="How ranks share the work (backend='accelerate'). ddp: each GPU holds the whole 4-bit "
        "model and its own batch. fsdp: FSDP1 shards the model (4-bit weights included) across the GPUs. "
        "auto: ddp when the model fits on each GPU, else fsdp. On CPU only ddp.",
    )
    global_batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Sequences per optimizer step across all ranks. When set, gradient_accumulation_steps is "
        "derived from it (global = per_device_batch_size x ranks x accumulation) and must divide evenly.",
    )

    # --- fast path ---------------------------------------------------------------------------------
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="Where to train: auto picks CUDA when there is a GPU."
    )
    attn_implementation: Attention = Field(
        default="auto",
        description="Attention kernel. auto, for padding-free batches on CUDA: varlen (torch's "
        "variable-length flash attention, each packed record on its own, no mask) for Llama, Mistral, "
        "Qwen2 and Qwen3, else flex_attention (skips the masked blocks between records, where sdpa "
        "computes them); else sdpa.",
    )
    liger_kernel: bool | None = Field(
        default=None,
        description="liger-kernel fused ops (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy). Default: on "
        "with CUDA when liger-kernel is installed (the gpu extra).",
    )
    fused_lora: bool | None = Field(
        default=None,
        description="Fused LoRA layers: the LoRA product added in the base matmul's epilogue, one autograd "
        "node per layer (the adapter stays a plain peft adapter). Default: on with CUDA where it applies, "
        "else off with the reason logged; True: required (an error says why it can't apply).",
    )
    fused_lora_check: bool = Field(
        default=False,
        description="Debug: at start-up, compare every fused layer's output and gradients with peft's own "
        "path, and stop naming the first layer that disagrees.",
    )

    # --- checkpoints, logging ----------------------------------------------------------------------
    save_steps: int = Field(
        default=200, ge=1, description="Save a resumable checkpoint every this many steps."
    )
    save_total_limit: int = Field(default=2, ge=1, description="Checkpoints kept (the oldest are deleted).")
    logging_steps: int = Field(default=10, ge=1, description="Log loss and throughput every this many steps.")
    tensorboard: bool | None = Field(
        default=None, description="Also log to TensorBoard (output_dir/tensorboard). Default: when installed."
    )
    memory_guard: bool = Field(
        default=True,
        description="Before loading, estimate the memory the run needs and stop early if the device can't "
        "hold it.",
    )

    # How a run is executed and logged, not what it learns: changing these keeps a run resumable.
    hash_exclude = frozenset(
        {
            "output_dir", "overwrite", "resume", "logging_steps", "tensorboard", "memory_guard",
            "save_total_limit", "save_steps", "gradient_checkpointing", "uncheckpointed_layers",
            "attn_implementation",
            "liger_kernel", "device", "backend", "strategy", "num_processes", "sagemaker", "fused_lora",
            "fused_lora_check",
        }
    )  # fmt: skip

    @field_validator("uncheckpointed_layers", mode="before")
    @classmethod
    def _count_not_flag(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise _problem(f"{value} is a flag: give a number of layers (0 or more) or 'auto'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.overwrite and self.resume:
            raise _problem("overwrite and resume exclude each other: start over, or continue")
        if self.padding_free and not self.packing:
            raise _problem("padding_free without packing leaves max_length unenforced; turn packing on")
        if self.padding_free is False and self.packing and self.packing_strategy == "bfd":
            raise _problem("bfd packing is always padding-free (trl); use packing_strategy 'wrapped' instead")
        if self.padding_free and self.packing_strategy == "wrapped":
            raise _problem("padding_free needs packing_strategy 'bfd': wrapped packing splits records")
        if self.backend == "local" and (self.strategy != "auto" or self.num_processes not in (None, 1)):
            what = f"num_processes={self.num_processes}"
            if self.strategy != "auto":
                what = f"strategy={self.strategy!r}"
            raise _problem(f"{what} needs backend='accelerate' (backend='local' trains in this one process)")
        if isinstance(self.uncheckpointed_layers, int) and self.uncheckpointed_layers < 0:
            raise _problem(f"uncheckpointed_layers {self.uncheckpointed_layers}: give 0 or more, or 'auto'")
        if self.uncheckpointed_layers not in ("auto", 0) and not self.gradient_checkpointing:
            raise _problem(
                f"uncheckpointed_layers={self.uncheckpointed_layers} needs gradient_checkpointing on "
                "(without it, no layer recomputes anything)"
            )
        if self.fused_lora_check and self.fused_lora is False:
            raise _problem("fused_lora_check checks the fused path, which fused_lora=False turns off")
        if self.backend == "sagemaker" and self.sagemaker is None:
            raise _problem("backend='sagemaker' needs the sagemaker section (role_arn, output_s3_uri, ...)")
        if self.sagemaker is not None and self.backend != "sagemaker":
            raise _problem(
                f"the sagemaker section is set but backend is {self.backend!r}: set backend='sagemaker'"
            )
        if self.backend == "sagemaker" and self.num_processes is not None:
            raise _problem(
                "num_processes with backend='sagemaker': a job trains on every GPU of its instance"
            )
        if self.global_batch_size is not None and self.gradient_accumulation_steps != 1:
            raise _problem(
                "give global_batch_size or gradient_accumulation_steps, not both: the first sets the second"
            )
        if self.global_batch_size is not None and self.global_batch_size % self.per_device_batch_size:
            raise _problem(
                f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size}"
            )
        return self

    def accumulation_for(self, world_size: int) -> int:
        """Forward passes per optimizer step on each of ``world_size`` ranks: as set, or derived from
        ``global_batch_size``, which must divide into ``per_device_batch_size x world_size``."""
        if self.global_batch_size is None:
            return self.gradient_accumulation_steps
        per_step = self.per_device_batch_size * world_size
        if self.global_batch_size % per_step:
            from bedrock_ft.errors import TrainingError

            raise TrainingError(
                f"global_batch_size {self.global_batch_size} doesn't divide across {world_size} rank(s) of "
                f"per_device_batch_size {self.per_device_batch_size} ({per_step} sequences a pass): make it "
                f"a multiple of {per_step}, or change per_device_batch_size or num_processes"
            )
        return self.global_batch_size // per_step

    @property
    def uses_padding_free(self) -> bool:
        """Padding-free batches: as set, else on with bfd packing (trl requires it there)."""
        if self.padding_free is not None:
            return self.padding_free
        return self.packing and self.packing_strategy == "bfd"

    @classmethod
    def seed_recipe(cls, **overrides: Any) -> TrainingConfig:
        """The seed's run settings: sdpa, no fused kernels or layers, trl's wrapped packing with padding."""
        settings: dict[str, Any] = {
            "packing": True,
            "packing_strategy": "wrapped",
            "padding_free": False,
            "liger_kernel": False,
            "fused_lora": False,
            "attn_implementation": "sdpa",
            "gradient_checkpointing": True,
            "uncheckpointed_layers": 0,
            "learning_rate": 2e-4,
        }
        return cls(**{**settings, **overrides})


TRAIN_LAYOUT = StageFile(
    sections={"qlora": QLoRAConfig, "training": TrainingConfig},
    input_key="dataset",
    input_hint="give the dataset's directory or manifest.json",
    input_required=True,
)
"""A ``bedrock-ft train`` config file: ``dataset`` and the ``qlora`` and ``training`` sections."""
