"""The streaming merge: bounded memory, a killed merge leaves nothing, and its check catches a bad merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bedrock_ft.errors import MergeError

PROBE = """
import json, sys
import peft, safetensors, torch, transformers  # imported before measuring
from bedrock_ft.merging import AdapterMerger, MergeConfig, _streaming

adapter, out, mode, chunk_mib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
_streaming.CHUNK_BYTES = chunk_mib << 20

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # resets the peak (VmHWM) to the current RSS
config = MergeConfig(output_dir=out, mode=mode, max_shard_size="30MB", workers=1)
AdapterMerger(config).merge(adapter)
print(json.dumps({"before": before, "peak": status("VmHWM:")}))
"""


def _peak_growth(adapter_dir: Path, out: Path, mode: str, chunk_mib: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(adapter_dir), str(out), mode, str(chunk_mib)],
        capture_output=True, text=True, check=False, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    numbers = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(numbers["peak"] - numbers["before"])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_streaming_peak_rss_is_bounded(adapter_dir: Path, tmp_path: Path) -> None:
    """Peak RSS grows by the adapter, one chunk buffer per worker and a fixed allowance, not by the model.

    30 MB shards split the 270 MB model into nine; the in-memory merge of the same model, measured the
    same way, grows by more than the whole model (it holds it in float32).
    """
    chunk_mib = 4
    model_bytes = 269_030_016
    adapter_bytes = (adapter_dir / "adapter_model.safetensors").stat().st_size
    streaming = _peak_growth(adapter_dir, tmp_path / "streaming", "streaming", chunk_mib)
    shards = list((tmp_path / "streaming" / "model").glob("model-*.safetensors"))
    assert len(shards) == 9
    bound = 2 * adapter_bytes + 1 * 3 * (chunk_mib << 20) + (64 << 20)
    assert streaming < bound, f"streaming merge grew RSS by {streaming >> 20} MiB, bound {bound >> 20} MiB"
    assert streaming < model_bytes / 2
    memory = _peak_growth(adapter_dir, tmp_path / "memory", "memory", chunk_mib)
    assert memory > model_bytes, f"memory merge grew RSS by only {memory >> 20} MiB"


KILLED = """
import sys
from bedrock_ft.merging import AdapterMerger, MergeConfig, _streaming
_streaming.CHUNK_BYTES = 1 << 20  # many small writes: slow enough to be caught mid-way
config = MergeConfig(output_dir=sys.argv[2], mode="streaming", max_shard_size="20MB", workers=1, verify=False)
AdapterMerger(config).merge(sys.argv[1])
"""


def test_killed_merge_leaves_no_output_and_the_next_one_cleans_up(adapter_dir: Path, tmp_path: Path) -> None:
    from bedrock_ft.merging import AdapterMerger, MergeConfig

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(adapter_dir), str(out)], stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    temp: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        temp = [p for p in tmp_path.glob(".bedrock-ft-tmp-out.*") if list(p.glob("model/model-0000[2-9]-*"))]
        if temp:
            break
        time.sleep(0.01)
    assert temp, (
        f"the merge ended before it could be killed: {proc.stderr.read().decode() if proc.stderr else ''}"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # complete or absent: never a partial model where the user looks
    assert temp[0].exists()
    artifact = AdapterMerger(MergeConfig(output_dir=str(out), mode="streaming")).merge(adapter_dir)
    assert artifact.preflight is not None and artifact.preflight.ok
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bedrock-ft-")] == []


def test_weight_check_catches_a_misscaled_merge(
    adapter_dir: Path, embedded_dir: Path, tmp_path: Path
) -> None:
    """Write a merge with every scale doubled, then run the check with the adapter's real config."""
    import dataclasses

    from bedrock_ft.merging._adapter import plan_adapter
    from bedrock_ft.merging._checkpoint import read_checkpoint
    from bedrock_ft.merging._merger import _adapter_shapes, _load_adapter
    from bedrock_ft.merging._streaming import write_streaming
    from bedrock_ft.merging._verify import check_weights

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    weights = adapter_dir / "adapter_model.safetensors"
    base = read_checkpoint(embedded_dir)
    plan = plan_adapter(config, _adapter_shapes(weights), {n: s.info.shape for n, s in base.items()})
    adapter = _load_adapter(weights)
    good = tmp_path / "good"
    good.mkdir()
    write_streaming(base, plan, adapter, good, dtype="bfloat16", shard_bytes=10**9, workers=1)
    assert check_weights(good, base, plan, adapter, config, dtype="bfloat16", layers=3)["max_rel"] < 2.0**-7

    wrong = dataclasses.replace(
        plan, targets={k: dataclasses.replace(t, scale=2 * t.scale) for k, t in plan.targets.items()}
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    write_streaming(base, wrong, adapter, bad, dtype="bfloat16", shard_bytes=10**9, workers=1)
    with pytest.raises(MergeError, match="differs from peft's merge of the same adapter"):
        check_weights(bad, base, plan, adapter, config, dtype="bfloat16", layers=3)


def test_rslora_and_alpha_pattern_follow_peft(embedded_dir: Path, tmp_path: Path) -> None:
    """Scales peft computes differently (rsLoRA, per-module alpha) merge the same in both modes."""
    from bedrock_ft.merging import AdapterMerger, MergeConfig

    from .conftest import make_adapter

    adapter = make_adapter(
        embedded_dir,
        tmp_path / "adapter",
        r=4,
        alpha=8.0,
        use_rslora=True,
        alpha_pattern={"v_proj": 2.0},
        seed=1,
    )
    results = [
        AdapterMerger(MergeConfig(output_dir=str(tmp_path / mode), mode=mode)).merge(adapter)
        for mode in ("streaming", "memory")
    ]
    assert [f.sha256 for f in results[0].files] == [f.sha256 for f in results[1].files]
    assert results[1].merge.verification.logits.error_vs_effect < 0.1


def test_merge_cli(adapter_dir: Path, tmp_path: Path, run_cli: object) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_cli(  # type: ignore[operator]
        "merge", str(adapter_dir), "--output-dir", str(out), "--mode", "streaming", "--json"
    )
    assert code == 0, err
    artifact = json.loads(stdout)
    assert artifact["kind"] == "model" and artifact["model_dir"] == str(out / "model")
    assert artifact["merge"]["mode"] == "streaming"
    code, stdout, err = run_cli("merge", str(adapter_dir), "--output-dir", str(out))  # type: ignore[operator]
    assert code == 1
    assert "error: output_dir" in err and "already holds this merge" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    config = tmp_path / "merge.yaml"
    config.write_text(
        f"adapter: {adapter_dir}\nmerge:\n  output_dir: {tmp_path / 'from-file'}\n  dtype: float32\n"
    )
    code, stdout, err = run_cli("merge", "--config", str(config), "--mode", "streaming")  # type: ignore[operator]
    assert code == 0, err
    assert "float32, 1 shard(s)" in stdout and "preflight: 0 error(s)" in stdout
