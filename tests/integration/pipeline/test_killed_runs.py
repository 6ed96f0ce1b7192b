"""`bedrock-ft run`, killed with SIGKILL mid-training and mid-upload, then run again.

The runs are real: the CLI in a subprocess, the built-in stages, the small random Llama trained with
QLoRA, the merge, and (mid-upload) the import into a local stack reached through the standard
AWS_ENDPOINT_URL_* variables with ``target: aws``, as a user's AWS run would be, through a TCP proxy in
front of S3 that lets the test kill the run while a weights file is on the wire.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bedrock_ft.local import LocalStack

pytestmark = pytest.mark.slow

TRAIN = {
    "max_length": 128, "per_device_batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0,
    "lr_scheduler": "constant", "logging_steps": 1, "tensorboard": False, "seed": 7,
}  # fmt: skip


def _config(run_dir: Path, base: Path, **training: Any) -> dict[str, Any]:
    return {
        "name": "killed",
        "run_dir": str(run_dir),
        "synthetic": {"records": 40, "seed": 0},
        "dataset": {"tokenizer": str(base), "test_size": 8, "seed": 0},
        "training": {"base_model": str(base), **TRAIN, **training},
        "merge": {},
    }


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bedrock_ft.cli", "run", str(config)],
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 300) -> None:
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"the run ended before the kill (exit {proc.returncode}): {err[-3000:]}")
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    return out


def _state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())  # type: ignore[no-any-return]


def _losses(run_dir: Path) -> dict[int, float]:
    events = [json.loads(x) for x in (run_dir / "adapter" / "metrics.jsonl").read_text().splitlines()]
    return {e["step"]: e["loss"] for e in events if e["event"] == "log" and "loss" in e}


def _merged_files(run_dir: Path) -> dict[str, str]:
    return {
        f["path"]: f["sha256"]
        for f in json.loads((run_dir / "merged" / "manifest.json").read_text())["files"]
    }


def _tensors(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def test_killed_mid_training_resumes_without_redoing_the_dataset(
    train_model_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    config = _write(tmp_path / "pipeline.yaml", _config(run_dir, train_model_dir, max_steps=16, save_steps=2))
    proc = _cli(config)
    checkpoint = run_dir / "adapter" / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    _kill_when(proc, checkpoint.exists)

    killed = _state(run_dir)
    assert killed["status"] == "running"  # SIGKILL: nothing could record the end
    assert killed["stages"]["dataset"]["status"] == "completed"
    assert killed["stages"]["train"]["status"] == "running" and killed["stages"]["train"]["output"] is None
    assert not (run_dir / "adapter" / "manifest.json").exists()
    dataset_manifest = run_dir / "dataset" / "manifest.json"
    before = (dataset_manifest.read_bytes(), dataset_manifest.stat().st_mtime_ns)

    # Ctrl-C on the next run, once it has saved a checkpoint of its own: a clean stop that says what
    # completed, and run.json records it.
    checkpoints = run_dir / "adapter" / "checkpoints"

    def saved() -> set[str]:
        return {p.parent.name for p in checkpoints.glob("checkpoint-*/trainer_state.json")}

    before_ctrl_c = saved()
    proc = _cli(config)
    try:
        deadline = time.monotonic() + 300
        while not saved() - before_ctrl_c:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no new checkpoint after 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted; completed: dataset. Run the same command again to resume." in err
    assert "stopped: run the same command again to resume" in err
    stopped = _state(run_dir)
    assert stopped["status"] == "interrupted" and stopped["stages"]["train"]["status"] == "interrupted"
    assert not (run_dir / "adapter" / "manifest.json").exists()

    out = _finish(_cli(config))
    state = _state(run_dir)
    assert state["status"] == "completed"
    assert {s: r["status"] for s, r in state["stages"].items()} == {
        "dataset": "skipped", "train": "completed", "merge": "completed",
    }  # fmt: skip
    assert state["stages"]["train"]["reason"] == "its last run was interrupted: running it again"
    # The dataset was not rebuilt: its manifest is the very file the first run wrote.
    assert (dataset_manifest.read_bytes(), dataset_manifest.stat().st_mtime_ns) == before
    # Training resumed from its checkpoints instead of starting over, after the kill and after Ctrl-C.
    events = [json.loads(x) for x in (run_dir / "adapter" / "metrics.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 3 and all(s["resumed"] for s in starts[1:])
    assert 2 <= int(starts[1]["step"]) < int(starts[2]["step"])
    assert "unchanged" in out and "16 steps" in out  # the table: the dataset row and the train row

    # The same pipeline, never interrupted (same settings, same threads). CPU QLoRA is not bitwise
    # reproducible here (two uninterrupted runs differ by ~0.5% from step 2 on), so the comparison is
    # within that noise: the same steps and loss curve, the same adapter and merged model layout.
    clean_dir = tmp_path / "clean"
    clean = _write(tmp_path / "clean.yaml", _config(clean_dir, train_model_dir, max_steps=16, save_steps=2))
    _finish(_cli(clean))
    resumed, uninterrupted = _losses(run_dir), _losses(clean_dir)
    assert list(resumed) == list(uninterrupted) == list(range(1, 17))
    for step, loss in uninterrupted.items():
        assert resumed[step] == pytest.approx(loss, rel=0.1), (step, resumed, uninterrupted)
    assert resumed[16] < 0.4 * resumed[1]  # it went on learning after the kill, instead of starting over
    a, b = _tensors(run_dir / "adapter" / "adapter"), _tensors(clean_dir / "adapter" / "adapter")
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert _merged_files(run_dir).keys() == _merged_files(clean_dir).keys()


# --- mid-upload: a proxy in front of S3 --------------------------------------------------------------------


class _Proxy:
    """A TCP proxy to S3. ``on_weights`` runs (once) when a request that writes a .safetensors object
    starts, and that request is dropped."""

    def __init__(self, upstream: str, on_weights: Callable[[], None] | None) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.on_weights = on_weights
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.fired = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            finally:
                client.close()

        threading.Thread(target=back, daemon=True).start()
        try:
            while data := client.recv(65536):
                request_line = data.split(b"\r\n", 1)[0]
                # A shard itself (model-00001-of-00001.safetensors), not the index (.safetensors.index.json)
                writes_weights = re.match(rb"PUT \S+\.safetensors(\?\S*)? HTTP/", request_line) is not None
                if self.on_weights and writes_weights and not self.fired.is_set():
                    self.fired.set()
                    self.on_weights()
                    return
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            client.close()


@pytest.fixture
def served(tmp_path: Path, aws_credentials: None) -> Iterator[LocalStack]:
    from bedrock_ft.local import LocalBedrockConfig

    with LocalStack(LocalBedrockConfig(data_dir=tmp_path / "bedrock"), export_env=False) as stack:
        stack.aws_config().client("s3").create_bucket(Bucket="pipe")
        yield stack


def test_killed_mid_upload_resumes_the_upload_on_the_next_run(
    served: LocalStack, train_model_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    data = _config(run_dir, train_model_dir, max_steps=4, save_steps=4)
    data.update(
        target="aws",
        aws={"region": "us-east-1"},
        **{
            "import": {
                "model_name": "killed-upload",
                "s3_uri": "s3://pipe/model/",
                "role_arn": "arn:aws:iam::123456789012:role/BedrockModelImport",
                "poll_interval": 0.5,
                "concurrency": 2,
            }
        },
    )
    config = _write(tmp_path / "pipeline.yaml", data)
    proc: list[subprocess.Popen[str]] = []

    s3 = served.aws_config().client("s3")
    killed_it = threading.Event()

    def kill_it() -> None:
        # Once another file going up beside the weights has landed: then the next run has something to skip.
        deadline = time.monotonic() + 30
        while (
            not s3.list_objects_v2(Bucket="pipe", Prefix="model/").get("KeyCount")
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        proc[0].send_signal(signal.SIGKILL)
        killed_it.set()

    proxy = _Proxy(served.s3_url, on_weights=kill_it)
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": proxy.url, "AWS_ENDPOINT_URL_BEDROCK": served.bedrock_url,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": served.bedrock_url,
    }  # fmt: skip
    proc.append(_cli(config, env))
    try:  # the proxy's thread kills the run, mid-upload
        deadline = time.monotonic() + 300
        while not killed_it.is_set():
            if proc[0].poll() is not None:
                pytest.fail(f"the run ended before the kill: {proc[0].communicate()[1][-3000:]}")
            assert time.monotonic() < deadline, "no weights upload after 300 s"
            time.sleep(0.05)
        proc[0].wait(timeout=30)
    finally:
        if proc[0].poll() is None:
            proc[0].kill()
    assert proc[0].returncode == -signal.SIGKILL
    proxy.close()
    killed = _state(run_dir)
    assert [killed["stages"][s]["status"] for s in ("dataset", "train", "merge")] == ["completed"] * 3
    assert killed["stages"]["import"]["status"] == "running"
    listed = s3.list_objects_v2(Bucket="pipe", Prefix="model/").get("Contents", [])
    assert listed and not any(o["Key"].endswith(".safetensors") for o in listed)  # killed mid-upload
    stamps = {s: killed["stages"][s]["started_at"] for s in ("dataset", "train", "merge")}

    env["AWS_ENDPOINT_URL_S3"] = served.s3_url
    _finish(_cli(config, env))
    state = _state(run_dir)
    assert [state["stages"][s]["status"] for s in ("dataset", "train", "merge")] == ["skipped"] * 3
    assert {s: state["stages"][s]["started_at"] for s in stamps} == stamps  # not redone
    imported = json.loads((run_dir / "imported" / "manifest.json").read_text())
    assert imported["status"] == "Completed" and imported["model_arn"]
    upload = imported["upload"]
    assert upload["skipped"]  # resumed: what the killed run had sent is not sent again
    assert any(p.endswith(".safetensors") for p in upload["sent"]) and not set(upload["sent"]) & set(
        upload["skipped"]
    )
    # What S3 holds now is exactly the merged model, byte for byte.
    merged = json.loads((run_dir / "merged" / "manifest.json").read_text())
    for entry in merged["files"]:
        body = s3.get_object(Bucket="pipe", Key=f"model/{entry['path']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["path"]
