"""Loading the base model for training: device, dtype, 4-bit quantization, LoRA.

Shared by :class:`~bedrock_ft.training.QLoRATrainer` and ``benchmarks/train_throughput.py``, so the
benchmark measures exactly what users train with.

The bitsandbytes CPU trap (DESIGN §10): on CPUs with AVX512-BF16, a no-grad forward through a 4-bit
model repacks its weights, after which most LoRA layers get zero gradients. Nothing here runs the
model; the trainer's first forward is a training step.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft._base_model import local_model_dir
from bedrock_ft.artifacts import LoraSettings, QuantizationSettings
from bedrock_ft.errors import TrainingError

if TYPE_CHECKING:
    import torch

    from bedrock_ft.architectures import Architecture
    from bedrock_ft.training._config import QLoRAConfig, TrainingConfig
    from bedrock_ft.training._distributed import RankInfo

__all__ = [
    "Precision",
    "architecture_of",
    "attention_label",
    "bf16_supported",
    "build_model",
    "check_context",
    "liger_enabled",
    "lora_config",
    "lora_summary",
    "quant_summary",
    "read_model_config",
    "resolve_base_model",
    "resolve_device",
    "resolve_precision",
]


def resolve_base_model(base_model: str) -> str:
    """'embedded' becomes the bundled model's directory; a local directory must hold a config and weights;
    anything else is a hub id, which transformers resolves (its cache, or a download)."""
    found = local_model_dir(base_model, error=TrainingError)
    return str(found) if found is not None else base_model


def read_model_config(model: str) -> dict[str, Any]:
    """The base's ``config.json`` as a dict (from the directory, or from the hub cache for an id)."""
    path = Path(model)
    if path.is_dir():
        config_file = path / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        try:
            config_file = Path(hf_hub_download(model, "config.json"))
        except Exception as exc:
            raise TrainingError(f"base_model {model}: can't fetch its config.json: {exc}") from None
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{config_file}: can't read the model config: {exc}") from None
    if not isinstance(data, dict):
        raise TrainingError(f"{config_file}: not a JSON object")
    return data


def resolve_device(requested: str, *, rank: RankInfo | None = None) -> str:
    """cuda or cpu. A launched rank trains on GPU ``local_rank`` (made the current device here)."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device='cuda' but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if requested == "auto" else requested
    if device == "cuda" and rank is not None:
        torch.cuda.set_device(rank.local_rank)
    elif device == "cuda" and torch.cuda.device_count() > 1:
        raise TrainingError(
            f"this process sees {torch.cuda.device_count()} GPUs and backend='local' trains on one: set "
            "backend='accelerate' to train on all of them, or pick one with CUDA_VISIBLE_DEVICES=0"
        )
    return device


def bf16_supported(device: str) -> bool:
    """Whether the hardware runs bfloat16 natively: Ampere or newer GPUs; CPUs with AVX512-BF16 or AMX."""
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))  # T4/V100 only emulate it
    cpu = torch.backends.cpu.get_cpu_capability()
    return cpu in {"AVX512_BF16", "AMX"} or bool(
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )


@dataclass(frozen=True)
class Precision:
    """The dtype a run computes in, and how the Trainer's mixed precision is set for it."""

    dtype: torch.dtype
    name: str  # bfloat16, float16, float32

    @property
    def trainer_flags(self) -> dict[str, bool]:
        return {"bf16": self.name == "bfloat16", "fp16": self.name == "float16"}


def resolve_precision(requested: str, device: str) -> Precision:
    """The compute dtype to use; asking for one the hardware lacks falls back with a warning."""
    import torch

    if requested == "auto":
        # float32 on CPU: robust, and about as fast for the small models one trains there
        best = "bfloat16" if bf16_supported(device) else "float16"
        return (
            Precision(getattr(torch, best), best) if device == "cuda" else Precision(torch.float32, "float32")
        )
    name = requested
    if name == "bfloat16" and not bf16_supported(device):
        fallback = "float16" if device == "cuda" else "float32"
        warnings.warn(
            f"compute_dtype='bfloat16' but this {device.upper()} has no bfloat16 support; training in "
            f"{fallback} instead (set compute_dtype='{fallback}' to silence this)",
            UserWarning,
            stacklevel=3,
        )
        name = fallback
    elif name == "float16" and device == "cpu":
        warnings.warn(
            "compute_dtype='float16' is not supported for training on CPU; training in float32 instead",
            UserWarning,
            stacklevel=3,
        )
        name = "float32"
    return Precision(getattr(torch, name), name)


def resolve_attention(training: TrainingConfig, device: str, model_config: dict[str, Any]) -> str:
    """The attention kernel for ``attn_implementation='auto'``, or the one asked for.

    Padding-free batches are one long sequence per step of several records. sdpa computes the whole
    masked square; flex_attention skips the empty blocks (1.5x faster end to end on a Mistral-7B shape
    at 4 x 2048 tokens); torch's varlen flash attention runs each record's own causal attention with no
    mask at all, where the architecture allows (see ``_attention``). benchmarks/train_profile.py
    splits a step's time between them.
    """
    from bedrock_ft.training._attention import VARLEN, varlen_blocker

    asked = training.attn_implementation
    if asked == "varlen":
        blocker = varlen_blocker(model_config, training, device)
        if blocker is not None:
            raise TrainingError(f"attn_implementation='varlen' can't apply: {blocker}")
        return VARLEN
    if asked != "auto":
        return asked
    if device == "cuda" and training.uses_padding_free:
        if varlen_blocker(model_config, training, device) is None:
            return VARLEN
        from transformers.utils import is_torch_flex_attn_available

        if is_torch_flex_attn_available():
            return "flex_attention"
    return "sdpa"


def attention_label(attention: str, model_config: dict[str, Any]) -> str:
    """The attention kernel's name for the loading line: varlen names the kernel it runs on this GPU."""
    from bedrock_ft.training._attention import VARLEN, varlen_kernel

    if attention != VARLEN:
        return attention
    from bedrock_ft.training import _attention

    heads = model_config.get("num_attention_heads") or 1
    head_dim = int(model_config.get("head_dim") or (model_config.get("hidden_size") or 128) // heads)
    if varlen_kernel(0, head_dim) == "cudnn":
        return f"{VARLEN} (cuDNN)"
    why = _attention.cudnn_blocker(0, head_dim) if _attention.kernel_preference == "auto" else None
    if why is not None and why.startswith("cudnn-frontend"):  # a GPU where cuDNN's kernels would serve
        return f"{VARLEN} (flash; pip install nvidia-cudnn-frontend for cuDNN's, faster on this GPU)"
    return f"{VARLEN} (flash)"


def liger_enabled(training: TrainingConfig, device: str) -> bool:
    """liger-kernel's fused ops: on by default with CUDA when installed; asked for explicitly, required."""
    available = importlib.util.find_spec("liger_kernel") is not None
    if training.liger_kernel is None:
        return device == "cuda" and available
    if training.liger_kernel and device != "cuda":
        raise TrainingError(
            "liger_kernel=True needs a CUDA GPU (its kernels are Triton); set it to None or False"
        )
    if training.liger_kernel and not available:
        raise TrainingError(
            "liger_kernel=True but liger-kernel is not installed: pip install 'bedrock-ft[gpu]'"
        )
    return training.liger_kernel


def lora_config(qlora: QLoRAConfig, arch: Architecture | None) -> Any:
    from peft import LoraConfig

    targets: Any = qlora.target_modules
    if targets is None:
        own = arch.lora_target_modules if arch is not None else ("all-linear",)
        targets = "all-linear" if own == ("all-linear",) else list(own)
    elif isinstance(targets, tuple):
        targets = list(targets)
    return LoraConfig(
        r=qlora.r,
        lora_alpha=qlora.alpha,
        lora_dropout=qlora.dropout,
        target_modules=targets,
        bias=qlora.bias,
        task_type="CAUSAL_LM",
    )


def build_model(
    model_path: str,
    qlora: QLoRAConfig,
    training: TrainingConfig,
    *,
    device: str,
    precision: Precision,
    arch: Architecture | None,
    rank: RankInfo | None = None,
    model_config: dict[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
) -> Any:
    """The base model (4-bit unless ``quantize=False``) with a fresh LoRA adapter, ready to train.

    LoRA weights are kept in float32 (the optimizer's master copy); the forward and backward run in
    ``precision`` under autocast. Where it applies, the LoRA layers take the fused path
    (``training.fused_lora``); ``say`` hears which, or why not. ``model_config``: the base's
    ``config.json``, when the caller has read it already.
    """
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if rank is not None:
        from accelerate import PartialState

        PartialState(cpu=device == "cpu")  # the process group first: FSDP's loading needs it
    if device != "cuda":
        device_map: Any = {"": "cpu"}
    elif rank is not None and rank.fsdp:
        # No device map: transformers quantizes on this rank's GPU, then keeps the weights on CPU (rank 0)
        # or on the meta device (the others); FSDP syncs them from rank 0 as it shards them.
        device_map = None
    else:
        device_map = {"": rank.local_rank if rank is not None else 0}
    from bedrock_ft.training._attention import VARLEN, register_varlen

    attention = resolve_attention(training, device, model_config or read_model_config(model_path))
    if attention == VARLEN:
        register_varlen()
    kwargs: dict[str, Any] = {
        "dtype": precision.dtype,
        "attn_implementation": attention,
        "device_map": device_map,
        "low_cpu_mem_usage": True,
    }
    if qlora.quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=qlora.quant_type,
            bnb_4bit_use_double_quant=qlora.double_quant,
            bnb_4bit_compute_dtype=precision.dtype,
            bnb_4bit_quant_storage=getattr(torch, qlora.storage_dtype),
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise TrainingError(f"base_model {model_path}: can't load it: {exc}") from exc
    model.config.use_cache = False
    if training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    try:
        peft_model = get_peft_model(model, lora_config(qlora, arch))
    except ValueError as exc:  # peft: target modules not found in the model
        raise TrainingError(f"target_modules {qlora.target_modules!r}: {exc}") from exc
    keep_adapter_fp32(peft_model)
    from bedrock_ft.training._fused import fuse_lora

    report = fuse_lora(peft_model, qlora, training, device=device, rank=rank)
    if say is not None:
        say(report.summary())
    return peft_model


def uncheckpoint_last(model: Any, count: int) -> None:
    """The last ``count`` decoder layers skip gradient checkpointing: they keep their activations for
    the backward instead of recomputing them (layers that aren't transformers' checkpointing layers
    are left alone)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers[max(0, len(layers) - count) :] if count > 0 else []:
        layer.gradient_checkpointing = False


def keep_activations(count: int) -> Any:
    """A callback that applies :func:`uncheckpoint_last` when training begins: transformers turns
    checkpointing on for every layer just before that."""
    from transformers import TrainerCallback

    class KeepActivations(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if model is not None:
                uncheckpoint_last(model, count)

    return KeepActivations()


def keep_adapter_fp32(model: Any) -> None:
    """Trainable (LoRA) parameters in float32: trl casts them to bf16 for quantized bases, where small
    optimizer updates vanish below bf16's resolution."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def check_context(model_config: dict[str, Any], max_length: int) -> None:
    context = model_config.get("max_position_embeddings")
    text = model_config.get("text_config")
    if context is None and isinstance(text, dict):
        context = text.get("max_position_embeddings")
    if isinstance(context, int) and max_length > context:
        raise TrainingError(
            f"max_length {max_length} is longer than the model's context ({context} tokens, "
            f"max_position_embeddings); set max_length to {context} or less"
        )


def architecture_of(config: dict[str, Any]) -> Architecture | None:
    """The registered architecture, or None: an unregistered one trains with all-linear targets."""
    from bedrock_ft.architectures import architecture_for_config
    from bedrock_ft.errors import RegistryError

    try:
        return architecture_for_config(config)
    except RegistryError:
        return None


def lora_summary(model: Any) -> LoraSettings:
    config = model.peft_config["default"]
    targets = config.target_modules
    return LoraSettings(
        r=config.r,
        alpha=config.lora_alpha,
        dropout=config.lora_dropout,
        target_modules=sorted(targets) if isinstance(targets, set | list) else targets,
        bias=config.bias,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )


def quant_summary(q: QLoRAConfig, compute: str) -> QuantizationSettings:
    return QuantizationSettings(
        quant_type=q.quant_type,
        double_quant=q.double_quant,
        compute_dtype=compute,
        storage_dtype=q.storage_dtype,
    )
