"""The in-memory merge: load the whole base with transformers, apply the adapter with peft, merge,
and compare the merged model's logits with base+adapter's on fixed prompts.

Plain LoRA layers are merged with :func:`~bedrock_ft.merging._streaming.merged_blocks` (float32, one
rounding), the same arithmetic as the streaming merge; anything else peft knows (DoRA, embedding LoRA,
modules_to_save) is merged by peft's own ``merge_and_unload``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import MergeError
from bedrock_ft.merging._adapter import PEFT_PREFIX
from bedrock_ft.merging._checkpoint import OutTensor, Stored, WrittenFile
from bedrock_ft.merging._streaming import (
    CHUNK_BYTES,
    _as_bytes,
    _check_finite,
    block_rows,
    merged_blocks,
    out_dtype_code,
    torch_dtype,
    write_checkpoint,
)

if TYPE_CHECKING:
    import torch

    from bedrock_ft.merging._adapter import AdapterPlan

__all__ = ["DEFAULT_PROMPTS", "DEFAULT_TOLERANCE", "MemoryMerge"]

DEFAULT_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Question: A train travels 60 km in 1.5 hours. What is its average speed?\nAnswer:",
)
# A gross check: rounding the merged weights to the dtype moves the logits by a few percent of the largest
# logit in bfloat16 (0.024-0.042 measured on the embedded model, trained adapters), 8x less in float16.
# A wrong merge is caught exactly by the weight check; this one catches a model that doesn't behave.
DEFAULT_TOLERANCE = {"float32": 1e-3, "float16": 2e-2, "bfloat16": 0.1}
CHAT_PROMPT = ({"role": "user", "content": "What is 12 plus 30?"},)


def _model_class(config: Mapping[str, Any]) -> Any:
    import transformers

    for name in config.get("architectures") or []:
        cls = getattr(transformers, str(name), None)
        if cls is not None:
            return cls
    if config.get("is_encoder_decoder"):
        return transformers.AutoModelForSeq2SeqLM
    return transformers.AutoModelForCausalLM


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise MergeError("device 'cuda': no GPU is visible; use device='cpu' or 'auto'")
    return device


class MemoryMerge:
    """One in-memory merge. :meth:`run` merges and checks; :meth:`write` writes the shards."""

    def __init__(
        self,
        base_dir: Path,
        base_config: Mapping[str, Any],
        adapter_dir: Path,
        plan: AdapterPlan,
        *,
        base_order: Mapping[str, Stored] | None,
        dtype: str,
        device: str,
    ) -> None:
        self.base_dir, self.base_config, self.adapter_dir = base_dir, base_config, adapter_dir
        self.plan, self.base_order = plan, base_order
        self.dtype, self.device = dtype, pick_device(device)
        self.untied: list[str] = []
        """Tensors written beside a tied weight they no longer equal (a trained head or embedding)."""
        self.model: Any = None

    def run(
        self, *, verify: bool, tokenizer_dir: Path, chat_template: str | None, tolerance: float
    ) -> dict[str, Any]:
        """Load, merge and (with ``verify``) compare logits, all in float32.

        The base is loaded in float32. Weights the adapter leaves alone are rounded to the output dtype
        as the export stores them; adapted ones keep their stored values, and their merge is rounded
        once, as the streaming merge rounds it. The logit difference is then the merge's own error,
        not bf16 activation noise.
        """
        import torch
        from peft import PeftModel

        cls = _model_class(self.base_config)
        out = torch_dtype(out_dtype_code(self.dtype))
        try:
            base = cls.from_pretrained(
                str(self.base_dir),
                dtype=torch.float32,
                low_cpu_mem_usage=True,
                device_map=self.device if self.device != "cpu" else None,
            )
        except Exception as exc:
            raise MergeError(
                f"base model {self.base_dir}: can't load it ({type(exc).__name__}: {exc})"
            ) from None
        with torch.no_grad():
            for name, p in base.named_parameters():
                if p.is_floating_point() and name not in self.plan.targets:
                    p.data = p.data.to(out).float()
        try:
            model = PeftModel.from_pretrained(base, str(self.adapter_dir), is_trainable=False)
        except Exception as exc:
            raise MergeError(
                f"adapter {self.adapter_dir}: peft can't apply it to {self.base_dir} "
                f"({type(exc).__name__}: {exc})"
            ) from None
        model.eval()
        report: dict[str, Any] = {"kind": "logits", "device": self.device}
        encoder_decoder = bool(self.base_config.get("is_encoder_decoder"))
        inputs = _prompts(tokenizer_dir, chat_template, self.device, encoder_decoder) if verify else []
        with torch.no_grad():
            reference = [model(**x).logits.float().cpu() for x in inputs]
            if inputs:
                with model.disable_adapter():
                    plain = [model(**x).logits.float().cpu() for x in inputs]
                report["adapter_effect"] = _diff(plain, reference)["max_abs"]
            report["merged_by_bedrock_ft"] = self._merge_lora_layers(model)
            self.model = model.merge_and_unload(safe_merge=True)
            for p in self.model.parameters():  # peft-merged layers (DoRA, ...) are stored as exported too
                if p.is_floating_point():
                    p.data = p.data.to(out).float()
            merged = [self.model(**x).logits.float().cpu() for x in inputs]
        if inputs:
            report.update(_diff(reference, merged))
            report.update(prompts=len(inputs), tolerance=tolerance)
            report["error_vs_effect"] = report["max_abs"] / max(report["adapter_effect"], 1e-12)
            if report["max_rel"] > tolerance:
                raise MergeError(
                    f"the merged model's logits differ from base+adapter's by {report['max_rel']:.3g} "
                    f"(relative; max abs {report['max_abs']:.3g}), over the {tolerance:g} tolerance for "
                    f"{self.dtype}. The merge "
                    "is wrong; nothing was written."
                )
        return report

    def _merge_lora_layers(self, model: Any) -> int:
        """Merge every plain LoRA Linear with the shared float32 arithmetic; peft does the rest."""
        import torch
        from peft.tuners.lora import Linear as LoraLinear

        done = 0
        for name, module in model.named_modules():
            if not isinstance(module, LoraLinear) or module.merged:
                continue
            weight = f"{name.removeprefix(PEFT_PREFIX)}.weight"
            target = self.plan.targets.get(weight)
            adapters = list(module.lora_A)
            if target is None or adapters != ["default"] or module.use_dora.get("default"):
                continue
            base_w = module.get_base_layer().weight
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            stored = (self.base_order or {}).get(weight)
            per = block_rows(stored) if stored is not None else base_w.shape[0]
            merged = merged_blocks(
                base_w.data, a.data.to(base_w.device), b.data.to(base_w.device), target, per
            )
            out = merged.to(torch_dtype(out_dtype_code(self.dtype)))
            _check_finite(weight, out, out_dtype_code(self.dtype))
            with torch.no_grad():
                base_w.data.copy_(out.float())
            module.merged_adapters.append("default")  # merge_and_unload then only unwraps it
            done += 1
        return done

    def write(
        self, out_dir: Path, *, shard_bytes: int, workers: int, on_bytes: Callable[[int], None] | None = None
    ) -> list[WrittenFile]:
        state = self.model.state_dict()
        names = _output_names(state, self.base_order)
        if self.base_order is not None:
            self.untied = [n for n in names if n not in self.base_order]
        out = out_dtype_code(self.dtype)
        tensors: dict[str, OutTensor] = {}
        for name in names:
            t = state[name]
            tensors[name] = OutTensor(name, out if t.is_floating_point() else _code(t), tuple(t.shape))

        def chunks(t: OutTensor) -> Iterator[Any]:
            # cast where the tensor lives (on a GPU: half the bytes cross to the host), then copy
            data = _as_bytes(state[t.name].detach().to(torch_dtype(t.dtype)).cpu())
            for start in range(0, max(len(data), 1), CHUNK_BYTES):
                chunk = data[start : start + CHUNK_BYTES]
                if on_bytes is not None:
                    on_bytes(len(chunk))
                yield chunk

        return write_checkpoint(
            out_dir, list(tensors.values()), chunks, shard_bytes=shard_bytes, workers=workers
        )


def _code(t: torch.Tensor) -> str:
    import torch

    table = {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
        torch.bool: "BOOL",
    }  # fmt: skip
    return table[t.dtype]


def _output_names(state: Mapping[str, torch.Tensor], base_order: Mapping[str, Stored] | None) -> list[str]:
    """The base checkpoint's tensors in its order, then any tensor the merge made distinct from every
    one of those (a head trained with modules_to_save, once tied to the embedding). A weight tied to one
    already written stays out, as save_pretrained leaves it out. For a .bin base: the state dict's order."""
    seen: set[tuple[int, int]] = set()
    names: list[str] = []
    if base_order is not None:
        missing = [n for n in base_order if n not in state]
        if missing:
            raise MergeError(
                f"the loaded model has no tensor {missing[0]!r} that the base checkpoint holds; merge with "
                "mode='streaming', which keeps the checkpoint's own layout"
            )
        for name in base_order:
            t = state[name]
            seen.add((t.untyped_storage().data_ptr(), t.storage_offset()))
            names.append(name)
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key not in seen and name not in names:
            seen.add(key)
            names.append(name)
    return names


def _prompts(tokenizer_dir: Path, chat_template: str | None, device: str, encoder_decoder: bool) -> list[Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    batches = [tokenizer(p, return_tensors="pt") for p in DEFAULT_PROMPTS]
    if chat_template:
        from bedrock_ft.chat_templates import ChatTemplate

        text = ChatTemplate("custom", chat_template).renderer(tokenizer.special_tokens_map)(
            CHAT_PROMPT, add_generation_prompt=True
        )
        batches.append(tokenizer(text, return_tensors="pt", add_special_tokens=False))
    inputs = [
        {k: v.to(device) for k, v in b.items() if k in ("input_ids", "attention_mask")} for b in batches
    ]
    if encoder_decoder:  # (flan-t5) the decoder reads the prompt too: enough to compare logits
        for x in inputs:
            x["decoder_input_ids"] = x["input_ids"]
    return inputs


def _diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> dict[str, float]:
    max_abs = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
    scale = max(float(x.abs().max()) for x in a)
    agree = [float((x.argmax(-1) == y.argmax(-1)).float().mean()) for x, y in zip(a, b, strict=True)]
    return {"max_abs": max_abs, "max_rel": max_abs / max(scale, 1e-12), "top1_agreement": min(agree)}
