from __future__ import annotations

import json

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
        ["train"],
        ["merge"],
        ["import"],
        ["invoke"],
        ["evaluate"],
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
