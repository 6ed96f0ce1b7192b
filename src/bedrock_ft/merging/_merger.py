"""AdapterMerger: merge a LoRA adapter into its full-precision base and export it for Bedrock.

Every check that needs no tensor data runs first: the adapter and base are found, the base is not
quantized, each adapter tensor fits a base weight (by header shapes), the output directory may be
written, and the disk has room. Then the merge writes into a temporary directory beside the output,
checks the result, runs Custom Model Import preflight on it and renames it into place: a merge that
fails or is killed leaves no output directory (and the next merge removes its leftovers).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft._io import atomic_dir
from bedrock_ft.artifacts import AdapterArtifact, FileEntry, MergeInfo, ModelArtifact
from bedrock_ft.errors import ArtifactError, MergeError
from bedrock_ft.merging._adapter import AdapterInput, adapter_weights_file, plan_adapter, resolve_adapter
from bedrock_ft.merging._base import check_not_quantized, read_base_config, resolve_base
from bedrock_ft.merging._checkpoint import DTYPE_BYTES, Stored, read_checkpoint
from bedrock_ft.merging._config import MergeConfig
from bedrock_ft.merging._export import tokenizer_source, write_metadata
from bedrock_ft.merging._output import (
    check_disk,
    check_writable,
    count_into,
    intact,
    lock_parent,
    merge_identity,
    output_bytes,
    remove_leftovers,
)
from bedrock_ft.progress import Progress, byte_bar, quiet, show_bar

if TYPE_CHECKING:
    import torch

    from bedrock_ft.merging._adapter import AdapterPlan

__all__ = ["AdapterMerger"]

GiB = 1 << 30
MODEL_SUBDIR = "model"
_FIT_SHARE = 0.8  # the memory mode runs when its estimate is under this share of the free memory


class AdapterMerger:
    """``AdapterMerger(MergeConfig(...)).merge(adapter)`` returns a :class:`ModelArtifact`.

    ``adapter`` is an :class:`AdapterArtifact`, a training run directory or its ``manifest.json``, or a
    bare peft adapter directory. ``progress`` receives one line per step; ``progress_bar`` shows the
    merged bytes as they are written (None: when stderr is a terminal).
    """

    def __init__(
        self,
        config: MergeConfig | None = None,
        *,
        progress: Progress | None = None,
        progress_bar: bool | None = None,
    ) -> None:
        self.config = config or MergeConfig()
        self._say: Progress = progress or quiet
        self._progress_bar = progress_bar

    def merge(self, adapter: AdapterArtifact | str | Path) -> ModelArtifact:
        cfg = self.config
        started = time.perf_counter()
        src = resolve_adapter(adapter)
        base_dir = resolve_base(cfg.base_model, recorded=src.base_model)
        base_config = read_base_config(base_dir)
        architecture = _architecture(base_config, src, base_dir)
        base, layout_problem = _checkpoint_or_none(base_dir)
        check_not_quantized(base_dir, base_config, {n: s.info.dtype for n, s in (base or {}).items()})
        weights_file = adapter_weights_file(src.adapter_dir)
        adapter_shapes = _adapter_shapes(weights_file)
        where = f"adapter {src.adapter_dir}" + (f" (trained on {src.base_model})" if src.base_model else "")
        plan = plan_adapter(
            src.config, adapter_shapes, {n: s.info.shape for n, s in (base or {}).items()}, where=where
        ) if base is not None else None  # fmt: skip
        identity = merge_identity(cfg, weights_file, src, base_dir)
        out = Path(cfg.output_dir).expanduser().resolve()
        check_writable(out.parent)
        with lock_parent(out.parent):  # the output's state is read and changed under the lock only
            remove_leftovers(out)
            if (existing := self._existing(out, identity)) is not None:
                return existing
            mode = self._mode(base, plan, layout_problem, base_config)
            out_bytes = _parameter_count(base) * DTYPE_BYTES[_code(cfg.dtype)] if base else None
            check_disk(out.parent, out_bytes)
            with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
                model_dir = tmp / MODEL_SUBDIR
                model_dir.mkdir()
                artifact = self._merge_into(
                    model_dir, mode=mode, src=src, base_dir=base_dir, base_config=base_config, base=base,
                    plan=plan, weights_file=weights_file, architecture=architecture,
                )  # fmt: skip
                artifact = artifact.model_copy(
                    update={
                        "config_hash": identity,
                        "merge": artifact.merge.model_copy(
                            update={"seconds": round(time.perf_counter() - started, 2)}
                        ),
                    }
                )
                artifact.write(tmp)
        self._say(f"merged model written to {out / MODEL_SUBDIR}")
        return ModelArtifact.read(out)

    # --- steps ------------------------------------------------------------------------------------

    def _warn_if_lossy(self, logits: dict[str, Any]) -> None:
        """Small updates can round away in bfloat16: say so, with the fix, when much of the effect is lost."""
        share = logits.get("error_vs_effect")
        if share is not None and share > LOSSY_SHARE and self.config.dtype != "float32":
            message = (
                f"rounding the merged weights to {self.config.dtype} moves the logits by {share:.0%} of the "
                "adapter's own effect on them; merge with dtype='float32' (or 'float16', which keeps 3 more "
                "bits than bfloat16) to keep more of it"
            )
            warnings.warn(message, stacklevel=3)
            self._say(message)

    def _existing(self, out: Path, identity: str) -> ModelArtifact | None:
        """A reusable earlier merge, or None when out is free to write; raise when it is not."""
        if not out.exists():
            return None
        if not out.is_dir():
            raise MergeError(f"output_dir {out} is a file; choose a directory")
        manifest = out / "manifest.json"
        previous: ModelArtifact | None = None
        if manifest.is_file():
            try:
                previous = ModelArtifact.read(manifest)
            except ArtifactError:
                previous = None
        # The same merge, whole: files that went missing or changed size since make it one to redo.
        same = previous is not None and previous.config_hash == identity and intact(previous)
        if same and self.config.reuse:
            assert previous is not None
            self._say(f"reusing the merge in {out} (same adapter, base and settings)")
            return previous
        if not self.config.overwrite:
            if same:
                raise MergeError(
                    f"output_dir {out} already holds this merge (same adapter, base and settings); pass "
                    "reuse=True to use it, or overwrite=True (--overwrite) to merge again"
                )
            if previous is None:
                what = "other files"
            elif previous.config_hash == identity:
                what = "this merge, damaged (files missing or resized)"
            else:
                what = "a merge of other inputs or settings"
            raise MergeError(
                f"output_dir {out} already exists and holds {what}; pass overwrite=True (--overwrite) to "
                "replace it, or choose another output_dir"
            )
        if previous is None and any(out.iterdir()):
            raise MergeError(
                f"output_dir {out} is not empty and holds no merge manifest; overwrite replaces only an "
                "earlier merge, so nothing was deleted. Choose another output_dir."
            )
        return None

    def _mode(
        self,
        base: dict[str, Stored] | None,
        plan: AdapterPlan | None,
        layout_problem: str | None,
        base_config: dict[str, Any],
    ) -> str:
        cfg = self.config
        streaming_blocker = layout_problem or (
            f"the streaming merge can't apply {plan.unsupported[0]}" if plan and plan.unsupported else None
        )
        if plan and plan.replaced and _tied(base_config):
            streaming_blocker = streaming_blocker or (
                f"the adapter replaces {next(iter(plan.replaced))} in a model with tied embeddings, "
                "whose head the streaming merge can't untie"
            )
        if cfg.mode == "streaming":
            if streaming_blocker:
                raise MergeError(f"mode='streaming': {streaming_blocker}; use mode='memory'")
            return "streaming"
        if cfg.mode == "memory":
            return "memory"
        if streaming_blocker or base is None:
            return "memory"
        from bedrock_ft._system import available_memory
        from bedrock_ft.merging._memory import pick_device

        need = _parameter_count(base) * 4 * 1.15  # the memory mode holds the model in float32
        device = pick_device(cfg.device)
        free, what = available_memory(device)
        if need <= free * _FIT_SHARE:
            return "memory"
        self._say(
            f"the model needs ~{need / GiB:.1f} GiB in memory, {device} has {free / GiB:.1f} GiB {what}: "
            "merging shard by shard"
        )
        return "streaming"

    def _merge_into(
        self,
        model_dir: Path,
        *,
        mode: str,
        src: AdapterInput,
        base_dir: Path,
        base_config: dict[str, Any],
        base: dict[str, Stored] | None,
        plan: AdapterPlan | None,
        weights_file: Path,
        architecture: str,
    ) -> ModelArtifact:
        cfg = self.config
        tok_dir = tokenizer_source(src.adapter_dir, base_dir)
        template = src.chat_template
        if template is None:
            from bedrock_ft.merging._export import chat_template_of

            template = chat_template_of(tok_dir)
        from bedrock_ft.merging._streaming import default_workers

        workers = cfg.workers or default_workers()
        total = output_bytes(base, cfg.dtype)
        bar = byte_bar(show_bar(self._progress_bar), total, "writing")
        merge_info: dict[str, Any] = {"mode": mode, "dtype": cfg.dtype, "max_shard_size": cfg.shard_bytes}
        checks: dict[str, Any] = {}
        if mode == "streaming":
            assert base is not None and plan is not None
            from bedrock_ft.merging._streaming import write_streaming

            self._say(f"merging {len(plan.targets)} LoRA weights shard by shard ({workers} worker(s))")
            with bar as on_bytes:
                files = write_streaming(
                    base, plan, _load_adapter(weights_file), model_dir, dtype=cfg.dtype,
                    shard_bytes=cfg.shard_bytes, workers=workers, progress=count_into(on_bytes),
                )  # fmt: skip
        else:
            from bedrock_ft.merging._adapter import AdapterPlan
            from bedrock_ft.merging._memory import DEFAULT_TOLERANCE, MemoryMerge

            # Without safetensors headers (a .bin base) there is no plan: peft merges every layer.
            job = MemoryMerge(
                base_dir, base_config, src.adapter_dir, plan or AdapterPlan(), base_order=base,
                dtype=cfg.dtype, device=cfg.device,
            )  # fmt: skip
            self._say(f"loading the base ({cfg.dtype}, {job.device}) and applying the adapter")
            logits = job.run(
                verify=cfg.verify, tokenizer_dir=tok_dir, chat_template=template,
                tolerance=cfg.tolerance or DEFAULT_TOLERANCE[cfg.dtype],
            )  # fmt: skip
            if cfg.verify:
                checks["logits"] = logits
                self._warn_if_lossy(logits)
            self._say("writing the merged shards")
            with bar as on_bytes:
                files = job.write(
                    model_dir, shard_bytes=cfg.shard_bytes, workers=workers, on_bytes=count_into(on_bytes)
                )
            if job.untied:
                merge_info["untied"] = job.untied
                self._say(
                    f"{', '.join(job.untied)} no longer equal the weights tied to them: written, and untied"
                )
            del job
        if cfg.verify and base is not None and plan is not None and plan.targets:
            from bedrock_ft.merging._verify import check_weights

            self._say(f"checking {cfg.verify_layers} merged weights against peft's own merge")
            checks["weights"] = check_weights(
                model_dir, base, plan, _load_adapter(weights_file), src.config, dtype=cfg.dtype,
                layers=cfg.verify_layers,
            )  # fmt: skip
        if checks:
            merge_info["verification"] = checks
        meta, notes = write_metadata(
            model_dir, base_dir=base_dir, base_config=base_config, tok_dir=tok_dir,
            chat_template=template, dtype=cfg.dtype, untie=bool(merge_info.get("untied")),
        )  # fmt: skip
        if "eos_tokens_added" in notes:
            merge_info["eos_tokens_added"] = notes["eos_tokens_added"]
        from bedrock_ft.preflight import check_model_dir

        report = check_model_dir(model_dir)
        if report.errors and cfg.check_bedrock:
            listing = "; ".join(str(f) for f in report.errors)
            raise MergeError(
                f"the merged model would be refused by Custom Model Import: {listing}. Nothing was written "
                "(check_bedrock=False keeps such a merge)."
            )
        entries = sorted((*files, *meta), key=lambda f: f.name)
        params = _written_parameters(model_dir)
        return ModelArtifact(
            model_dir=str(model_dir),
            architecture=architecture,
            dtype=cfg.dtype,
            parameter_count=params,
            total_bytes=sum(f.size for f in entries),
            files=tuple(FileEntry(path=f.name, size=f.size, sha256=f.sha256) for f in entries),
            preflight=report,
            chat_template=notes.get("chat_template", template),
            base_model=str(base_dir),
            adapter_dir=str(src.adapter_dir),
            merge=MergeInfo.model_validate(merge_info),
        )


# --- helpers -----------------------------------------------------------------------------------------

LOSSY_SHARE = 0.25
"""Warn when rounding to the export dtype moves the logits by more than this share of the adapter's effect."""


def _code(dtype: str) -> str:
    from bedrock_ft.merging._streaming import out_dtype_code

    return out_dtype_code(dtype)


def _architecture(base_config: dict[str, Any], src: AdapterInput, base_dir: Path) -> str:
    from bedrock_ft.architectures import architecture_for_config
    from bedrock_ft.errors import RegistryError

    try:
        name = architecture_for_config(base_config).name
    except RegistryError:
        name = str(base_config.get("model_type") or "unknown")
    if src.architecture and src.architecture != name:
        raise MergeError(
            f"adapter {src.adapter_dir} was trained on a {src.architecture} model, but base model "
            f"{base_dir} is {name}; merge into the base it was trained on (MergeConfig.base_model)"
        )
    return name


def _checkpoint_or_none(base_dir: Path) -> tuple[dict[str, Stored] | None, str | None]:
    """The base's safetensors tensors; None and why when it has only .bin weights."""
    try:
        return read_checkpoint(base_dir), None
    except MergeError as exc:
        if any(base_dir.glob("*.bin")) and not any(base_dir.glob("*.safetensors")):
            return None, str(exc)
        raise


def _adapter_shapes(weights_file: Path) -> dict[str, tuple[int, ...]]:
    if weights_file.suffix == ".safetensors":
        from bedrock_ft._safetensors import HeaderError, read_header

        try:
            return {
                k: v.shape for k, v in sorted(read_header(weights_file).items(), key=lambda kv: kv[1].offset)
            }
        except (HeaderError, OSError) as exc:
            raise MergeError(f"{weights_file}: not a readable safetensors file ({exc})") from None
    return {k: tuple(v.shape) for k, v in _load_adapter(weights_file).items()}


def _load_adapter(weights_file: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors, floats as float32 (the merge arithmetic's precision)."""
    import torch

    try:
        if weights_file.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(weights_file))
        else:
            tensors = torch.load(str(weights_file), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MergeError(
            f"{weights_file}: can't read the adapter weights ({type(exc).__name__}: {exc})"
        ) from None
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def _parameter_count(base: dict[str, Stored]) -> int:
    return sum(s.numel for s in base.values())


def _written_parameters(model_dir: Path) -> int:
    return sum(s.numel for s in read_checkpoint(model_dir).values())


def _tied(config: dict[str, Any]) -> bool:
    text = config.get("text_config")
    tied = config.get("tie_word_embeddings", True)  # transformers' default
    if isinstance(text, dict) and "tie_word_embeddings" in text:
        tied = text["tie_word_embeddings"]
    return bool(tied)
