"""An upload killed half-way (SIGKILL, no cleanup) resumes: the re-run sends only what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from bedrock_ft import BedrockImporter, ImportConfig
from bedrock_ft.local import LocalStack

from .conftest import BUCKET, ROLE, keys

MakeConfig = Callable[..., ImportConfig]

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from bedrock_ft.importing import BedrockImporter, ImportConfig

    model_dir, uri, role, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sent = [0]

    def on_upload(name, n):
        sent[0] += n
        if sent[0] >= limit:  # a kill -9 half-way through a file: no cleanup of any kind runs
            os.kill(os.getpid(), signal.SIGKILL)

    config = ImportConfig(
        model_name="sharded", s3_uri=uri, role_arn=role, concurrency=2,
        multipart_chunksize="5MiB", multipart_threshold="5MiB", poll_interval=0.5,
    )
    BedrockImporter(config, on_upload=on_upload).import_model(model_dir)
    """
)


def test_killed_upload_resumes_with_only_the_missing_files(
    stack: LocalStack, import_config: MakeConfig, sharded_model: Path
) -> None:
    shards = sorted(
        (p for p in sharded_model.iterdir() if p.name.endswith(".safetensors")),
        key=lambda p: -p.stat().st_size,
    )
    big = shards[:4]  # the four 6 MiB shards: each goes up alone, in parallel 5 MiB parts
    assert len({p.stat().st_size for p in big}) == 1
    limit = 2 * big[0].stat().st_size + 3 * 2**20  # two shards done, the third half-way
    env = {**os.environ, **stack.env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(sharded_model), f"s3://{BUCKET}/sharded/", ROLE, str(limit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr
    s3 = stack.aws_config().client("s3")
    done = keys(stack, "sharded/")
    big_names = sorted(p.name for p in big)
    assert len(done) == 2 and {key.split("/", 1)[1] for key in done} <= set(big_names), done
    # The third shard's multipart upload was left open by the kill.
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix="sharded/").get("Uploads")

    steps: list[str] = []
    config = import_config(model_name="sharded", s3_uri=f"s3://{BUCKET}/sharded/")
    imported = BedrockImporter(config, progress=steps.append).import_model(sharded_model)

    everything = sorted(p.name for p in sharded_model.iterdir())
    skipped = sorted(key.split("/", 1)[1] for key in done)
    assert sorted(imported.upload.skipped) == skipped
    assert sorted(imported.upload.sent) == sorted(set(everything) - set(skipped))
    assert imported.upload.bytes_sent == sum(
        (sharded_model / name).stat().st_size for name in imported.upload.sent
    )
    assert any("aborted 1 multipart upload(s)" in step for step in steps), steps
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix="sharded/").get("Uploads")
    assert keys(stack, "sharded/") == [f"sharded/{name}" for name in everything]
    assert imported.status == "Completed" and imported.model_arn
