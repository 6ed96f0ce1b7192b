"""The adapter side of a merge: where it is, what it was trained on, and which base weights it changes.

:func:`resolve_adapter` accepts what users have: an :class:`AdapterArtifact`, a training run directory
or its manifest, or a bare peft adapter directory. :func:`plan_adapter` reads the adapter's tensor
names and shapes (no torch) and maps each LoRA pair onto the base weight it updates, with its scale.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bedrock_ft.artifacts import AdapterArtifact
from bedrock_ft.errors import ArtifactError, MergeError

__all__ = [
    "ADAPTER_CONFIG",
    "AdapterInput",
    "AdapterPlan",
    "LoraTarget",
    "adapter_weights_file",
    "plan_adapter",
    "resolve_adapter",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>A|B)(?:\.[^.]+)?\.weight$")
_UNSUPPORTED = (
    ("lora_magnitude_vector", "DoRA magnitude"),
    ("lora_embedding_", "LoRA on an embedding"),
    (".lora_B.bias", "LoRA bias (lora_bias=True)"),
    (".lora_A.bias", "LoRA bias (lora_bias=True)"),
)


@dataclass(frozen=True)
class AdapterInput:
    """An adapter to merge, whatever form it came in."""

    adapter_dir: Path
    config: dict[str, Any]
    base_model: str | None
    """Base recorded with the adapter (the manifest's, else adapter_config's base_model_name_or_path)."""
    architecture: str | None = None
    chat_template: str | None = None
    artifact: AdapterArtifact | None = None


def adapter_weights_file(adapter_dir: Path) -> Path:
    for name in ADAPTER_WEIGHTS:
        if (adapter_dir / name).is_file():
            return adapter_dir / name
    raise MergeError(
        f"adapter directory {adapter_dir} has no weights: expected {' or '.join(ADAPTER_WEIGHTS)} next to "
        f"{ADAPTER_CONFIG} (was it saved with model.save_pretrained()? an interrupted run keeps its "
        "checkpoints under checkpoints/)"
    )


def resolve_adapter(adapter: AdapterArtifact | str | Path) -> AdapterInput:
    """Find the adapter directory and what was recorded about it. Raises MergeError saying what is missing."""
    try:
        artifact = AdapterArtifact.from_input(adapter)
    except ArtifactError as exc:
        raise MergeError(f"adapter {adapter}: {exc}") from None
    if artifact is not None:
        adapter_dir = Path(artifact.adapter_dir)
    else:  # a path without a manifest: a bare peft adapter directory
        adapter_dir = Path(os.fspath(adapter)).expanduser()  # type: ignore[arg-type]
        if adapter_dir.is_file():
            raise MergeError(f"adapter {adapter}: expected a directory or a manifest.json, got a file")
        if (
            not (adapter_dir / ADAPTER_CONFIG).is_file()
            and (adapter_dir / "adapter" / ADAPTER_CONFIG).is_file()
        ):
            raise MergeError(
                f"adapter {adapter}: a training run without manifest.json, so it did not finish; resume it "
                f"(TrainingConfig(resume=True)) or merge a checkpoint under {adapter_dir / 'checkpoints'}"
            )
    config_file = adapter_dir / ADAPTER_CONFIG
    if not config_file.is_file():
        raise MergeError(
            f"adapter directory {adapter_dir} has no {ADAPTER_CONFIG}: not a peft adapter (save one with "
            "model.save_pretrained(), or point at the training run directory)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise MergeError(f"{config_file}: not readable JSON ({exc})") from None
    kind = config.get("peft_type", "LORA")
    if str(kind).upper() != "LORA":
        raise MergeError(f"{config_file}: peft_type {kind!r}; AdapterMerger merges LoRA adapters only")
    _refuse_unmergeable(config, config_file)
    adapter_weights_file(adapter_dir)
    recorded = artifact.base_model if artifact else config.get("base_model_name_or_path")
    return AdapterInput(
        adapter_dir=adapter_dir,
        config=config,
        base_model=recorded if isinstance(recorded, str) and recorded else None,
        architecture=artifact.architecture if artifact else None,
        chat_template=artifact.chat_template if artifact else None,
        artifact=artifact,
    )


_MODIFIED_BASE_INITS = ("pissa", "olora", "corda", "loftq")


def _refuse_unmergeable(config: Mapping[str, Any], config_file: Path) -> None:
    """Adapters that don't fit the plain base: merging them into it would silently give a wrong model."""
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_MODIFIED_BASE_INITS):
        raise MergeError(
            f"{config_file}: init_lora_weights={init!r} trains against a modified base (the residual of the "
            "principal components, or a quantization-corrected one), so merging it into the original base "
            "gives a wrong model. Save it converted to plain LoRA first: model.save_pretrained(path, "
            "path_initial_model_for_weight_conversion=...) (peft docs), then merge that."
        )
    if config.get("alora_invocation_tokens"):
        raise MergeError(
            f"{config_file}: an activated LoRA (alora_invocation_tokens) changes the model only after its "
            "invocation tokens, which a merged weight can't express; serve it with peft instead"
        )


@dataclass(frozen=True)
class LoraTarget:
    """One base weight a LoRA pair updates: ``W + scale * B @ A`` (transposed for fan_in_fan_out)."""

    weight: str
    a_key: str
    b_key: str
    rank: int
    scale: float
    fan_in_fan_out: bool = False

    def base_shape(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> tuple[int, int]:
        out_in = (b_shape[0], a_shape[1])
        return (out_in[1], out_in[0]) if self.fan_in_fan_out else out_in


@dataclass
class AdapterPlan:
    """What the adapter changes in the base: LoRA targets, whole-tensor replacements, and what the
    streaming merge can't do (the memory mode hands those to peft)."""

    targets: dict[str, LoraTarget] = field(default_factory=dict)
    """Base weight name -> its LoRA pair."""
    replaced: dict[str, str] = field(default_factory=dict)
    """Base tensor name -> adapter tensor that replaces it (trained biases, modules_to_save)."""
    unsupported: list[str] = field(default_factory=list)
    """Adapter tensors the streaming merge can't apply, each with the reason."""


def _pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """peft's ``get_pattern_key``: the first pattern that matches the end of the module name."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def plan_adapter(
    config: Mapping[str, Any],
    adapter_shapes: Mapping[str, tuple[int, ...]],
    base_shapes: Mapping[str, tuple[int, ...]],
    *,
    where: str = "adapter",
) -> AdapterPlan:
    """Map the adapter's tensors onto the base's. Raises MergeError naming the first adapter tensor that
    doesn't fit the base (a weight the base doesn't have, or a shape that differs)."""
    plan = AdapterPlan()
    pairs: dict[str, dict[str, str]] = {}
    mismatches: list[str] = []
    for key in adapter_shapes:
        name = key.removeprefix(PEFT_PREFIX)
        reason = next((why for marker, why in _UNSUPPORTED if marker in name), None)
        if reason:
            plan.unsupported.append(f"{key} ({reason})")
            continue
        match = _LORA_KEY.match(name)
        if match:
            pairs.setdefault(match["module"], {})[match["which"]] = key
        elif name in base_shapes and base_shapes[name] == adapter_shapes[key]:
            plan.replaced[name] = key
        elif name in base_shapes:
            mismatches.append(
                f"adapter tensor {key} has shape {list(adapter_shapes[key])}, base tensor {name} has "
                f"{list(base_shapes[name])}"
            )
        else:
            plan.unsupported.append(f"{key} (no base tensor {name})")
    alpha = float(config.get("lora_alpha", 8))
    alpha_pattern = config.get("alpha_pattern") or {}
    rslora = bool(config.get("use_rslora", False))
    fan_in_fan_out = bool(config.get("fan_in_fan_out", False))
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            missing = "B" if "A" in pair else "A"
            raise MergeError(f"{where}: {next(iter(pair.values()))} has no lora_{missing} partner")
        a_shape, b_shape = adapter_shapes[pair["A"]], adapter_shapes[pair["B"]]
        weight = f"{module}.weight"
        rank = a_shape[0] if len(a_shape) == 2 else -1
        if len(a_shape) != 2 or len(b_shape) != 2 or b_shape[1] != rank:
            mismatches.append(
                f"adapter tensors {pair['A']} {list(a_shape)} and {pair['B']} {list(b_shape)} "
                "are not a LoRA pair"
            )
            continue
        a = float(_pattern_value(alpha_pattern, module, alpha))
        target = LoraTarget(
            weight=weight, a_key=pair["A"], b_key=pair["B"], rank=rank,
            scale=a / math.sqrt(rank) if rslora else a / rank, fan_in_fan_out=fan_in_fan_out,
        )  # fmt: skip
        want = target.base_shape(a_shape, b_shape)
        flipped = (want[1], want[0])
        if weight in base_shapes and tuple(base_shapes[weight]) == flipped != want:
            # peft applies fan_in_fan_out per layer type (GPT-2's Conv1D stores (in, out), a Linear head
            # (out, in)): a non-square weight's shape says which layout it has.
            target = replace(target, fan_in_fan_out=not target.fan_in_fan_out)
            want = flipped
        if weight not in base_shapes:
            mismatches.append(
                f"adapter tensor {pair['A']} adapts {weight}, which the base model does not have"
            )
        elif tuple(base_shapes[weight]) != want:
            mismatches.append(
                f"adapter tensor {pair['A']} {list(a_shape)} with {pair['B']} {list(b_shape)} makes a "
                f"{list(want)} update, but base tensor {weight} is {list(base_shapes[weight])}"
            )
        else:
            plan.targets[weight] = target
    if mismatches:
        more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
        raise MergeError(
            f"{where} does not fit this base model: {mismatches[0]}{more}. Merge into the base the adapter "
            "was trained on (MergeConfig.base_model)."
        )
    if not plan.targets and not plan.replaced:
        raise MergeError(f"{where}: no LoRA weights in the adapter (lora_A/lora_B tensors)")
    return plan
