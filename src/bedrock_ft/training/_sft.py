"""trl's SFTTrainer, with its per-step metrics read from the GPU at logging time instead of mid-step.

trl's ``compute_loss`` turns the step's token count, entropy and top-1 accuracy into Python floats
with ``.item()`` right after the forward: the CPU waits for the GPU to finish the forward before it
can queue the backward, and the GPU then waits for the CPU (benchmarks/train_profile.py's ``trainer``
variant shows the gap). :class:`SFTTrainer` here computes the same loss the same way (trl's fused LM
head, the same normalisation) and keeps the metrics' raw sums on the device; they are gathered and
turned into trl's ``entropy``, ``mean_token_accuracy`` and ``num_tokens`` when the trainer logs, so the
logged values are the ones trl would log. Anything else trl's ``compute_loss`` handles (a custom loss
function, label smoothing, a loss type other than NLL, MoE auxiliary losses, sequence parallelism,
``return_outputs``) goes to trl's own method unchanged.

With one process and every token counted (padding-free batches), it counts the tokens seen on the
host: transformers gathers the count on the device and reads it back with ``.item()`` before every
micro-step, so the CPU waits for the GPU to finish the previous step before it prepares the next.

It also spares the CPU the three walks over every module that transformers makes each step: the
model's parameters are counted once for its FLOP estimate (``total_flos``), and gradient clipping and
``zero_grad`` go over the trainable parameters, listed once (on a CUDA GPU, clipped by
:func:`clip_grads`). On a 7B model these walks took tens of milliseconds of CPU time a step, while the
GPU waited.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["clip_grads", "sft_trainer_class"]


@functools.cache
def sft_trainer_class() -> type:
    import torch
    from trl import SFTTrainer

    class DeferredMetricsSFTTrainer(SFTTrainer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # per micro-step: the metrics' sums by mode, and the training tokens
            self._deferred: dict[str, list[Any]] = {"train": [], "eval": [], "tokens": []}
            self._params_counted: int | None = None
            self._trainable: list[Any] | None = None
            self._skip_parameter_walks()
            # tokens seen, counted here (see the module's docstring); transformers' own count is off
            self._host_tokens = (
                self.args.include_num_input_tokens_seen == "all" and self.accelerator.num_processes == 1
            )
            if self._host_tokens:
                self.args.include_num_input_tokens_seen = "no"

        def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
            if self._host_tokens:
                self.state.num_input_tokens_seen += inputs[
                    getattr(self.model, "main_input_name", "input_ids")
                ].numel()
            return super().training_step(model, inputs, num_items_in_batch)

        def _skip_parameter_walks(self) -> None:
            """transformers finds the parameters with gradients by walking every module of the model, twice
            a step: for gradient clipping (``model.parameters()``) and for ``model.zero_grad()``. Only the
            trainable parameters can have gradients; they are listed at the first clipping and used from
            then on. Under FSDP, DeepSpeed or XLA accelerate clips its own way, and is left alone."""
            from accelerate.utils import DistributedType

            accelerator = self.accelerator
            own_ways = (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.XLA)
            if accelerator.distributed_type in own_ways:
                return
            clip = accelerator.clip_grad_norm_
            # clip with clip_grads: every trainable parameter a plain CUDA tensor, all of one dtype
            own: list[bool] = []

            def clip_trainable(parameters: Any, max_norm: float, norm_type: float = 2) -> Any:
                if self._trainable is None:
                    self._trainable = [p for p in parameters if p.requires_grad]
                    kinds = {(p.device.type, p.dtype, type(p.data)) for p in self._trainable}
                    device, _dtype, kind = next(iter(kinds), ("", None, None))
                    own.append(len(kinds) == 1 and device == "cuda" and kind is torch.Tensor)
                grads = [p.grad for p in self._trainable if p.grad is not None]
                if norm_type != 2 or not own[0] or not grads:
                    return clip(self._trainable, max_norm, norm_type=norm_type)
                accelerator.unscale_gradients()  # what accelerate's clip_grad_norm_ does first
                return clip_grads(grads, max_norm)

            accelerator.clip_grad_norm_ = clip_trainable
            model = self.model
            zero_grad = model.zero_grad

            def zero_trainable(set_to_none: bool = True) -> None:
                if not set_to_none or self._trainable is None:
                    zero_grad(set_to_none)
                    return
                for p in self._trainable:
                    p.grad = None

            model.zero_grad = zero_trainable

        def floating_point_ops(self, inputs: dict[str, Any]) -> int:
            """transformers' estimate, 6 x tokens x parameters, with the parameters counted once: its own
            method counts them again every step, a walk over every module and parameter that took tens of
            milliseconds of CPU time a step on a 7B model (the GPU waits for it)."""
            model = self.model
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            if getattr(type(base), "floating_point_ops", None) is not _stock_flops():
                return super().floating_point_ops(inputs)  # type: ignore[no-any-return]
            if self._params_counted is None:
                self._params_counted = int(base.num_parameters(exclude_embeddings=True))
            return 6 * int(base.estimate_tokens(inputs)) * self._params_counted

        def _plain_nll(self, return_outputs: bool) -> bool:
            parallelism = getattr(self.accelerator, "parallelism_config", None)
            return not (
                return_outputs
                or self.compute_loss_func is not None
                or self.label_smoother is not None
                or getattr(self.args, "loss_type", "nll") != "nll"
                or self.aux_loss_enabled
                or (parallelism is not None and getattr(parallelism, "sp_enabled", False))
            )

        def compute_loss(
            self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            if not self._plain_nll(return_outputs):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = -outputs.log_probs.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            deferred = self._deferred
            sums = (outputs.label_mask.sum(), outputs.entropy.detach().sum(), outputs.is_top1.sum())
            deferred[mode].append(torch.stack([t.float() for t in sums]))
            if mode == "train":
                if "attention_mask" in inputs:
                    deferred["tokens"].append(inputs["attention_mask"].sum())
                elif "position_ids" in inputs:
                    deferred["tokens"].append(inputs["position_ids"].size(1))
                else:
                    raise ValueError("Expected 'attention_mask' or 'position_ids' in inputs.")
            return loss

        def _flush(self) -> None:
            deferred = self._deferred
            for mode in ("train", "eval"):
                if not deferred[mode]:
                    continue
                # every process's sums of each micro-step, summed over processes (as trl's gathers do)
                local = torch.stack(deferred[mode])  # [steps, 3]
                sums = self.accelerator.gather(local).view(-1, *local.shape).sum(0).tolist()
                deferred[mode].clear()
                for valid, entropy, correct in sums:
                    self._metrics[mode]["entropy"].append(entropy / valid if valid > 0 else 0.0)
                    self._metrics[mode]["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
                if mode == "eval":  # as trl: the count of training tokens, in the eval metrics too
                    self._metrics["eval"]["num_tokens"] = [self._total_train_tokens]
            if deferred["tokens"]:
                device = self.accelerator.device
                local = torch.tensor([int(t) for t in deferred["tokens"]], device=device)
                deferred["tokens"].clear()
                for n in self.accelerator.gather(local).view(-1, *local.shape).sum(0).tolist():
                    self._total_train_tokens += n // self._tp_size
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            self._flush()
            if self._host_tokens:  # as transformers logs its own count
                from transformers.trainer_utils import speed_metrics

                logs["num_input_tokens_seen"] = self.state.num_input_tokens_seen
                if start_time is not None:
                    logs.update(
                        speed_metrics("train", start_time, num_tokens=self.state.num_input_tokens_seen)
                    )
            super().log(logs, start_time)

    return DeferredMetricsSFTTrainer


def clip_grads(grads: list[Any], max_norm: float) -> Any:
    """torch's ``clip_grad_norm_`` (2-norm, foreach) for gradients on one device in one dtype: the same
    kernels and arithmetic, without the per-tensor Python of its general path (a ``.to`` for each of a
    7B adapter's 448 gradient norms, grouping by device and dtype). Returns the total norm."""
    import torch

    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def _stock_flops() -> Any:
    from transformers.modeling_utils import ModuleUtilsMixin

    return ModuleUtilsMixin.floating_point_ops
