from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

RunCli = Callable[..., tuple[int, str, str]]  # the run_cli fixture (tests/conftest.py)


def test_run_reports_every_problem_of_the_file_at_once(run_cli: RunCli, tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("name: Bad Name\ntraining: {learning_rate: -1}\nmerge: {dtype: int3}\n")
    code, _, err = run_cli("run", str(config))
    assert code == 1
    assert f"invalid config in {config}: " in err
    for part in (
        "name: use 1 to 40",
        "training.learning_rate:",
        "merge.dtype:",
        "training: this stage needs",
    ):
        assert part in err, err
    code, _, err = run_cli("run", str(tmp_path / "missing.yaml"))
    assert code == 1 and "file not found" in err


def test_train_needs_a_config_or_a_dataset(run_cli: RunCli) -> None:
    code, _, err = run_cli("train")
    assert code == 1
    assert "dataset: give the dataset's directory or manifest.json" in err


def test_merge_needs_an_adapter(run_cli: RunCli) -> None:
    code, _, err = run_cli("merge")
    assert code == 1
    assert "adapter: give the adapter's run directory" in err


def test_import_needs_a_model(run_cli: RunCli) -> None:
    code, _, err = run_cli(
        "import", "--model-name", "m", "--s3-uri", "s3://bucket/m/", "--role-arn",
        "arn:aws:iam::123456789012:role/R",
    )  # fmt: skip
    assert code == 1
    assert "model: give the merge's output directory or a model directory" in err


def test_import_names_the_bad_field_before_anything_runs(run_cli: RunCli, tmp_path: Path) -> None:
    code, _, err = run_cli(
        "import", str(tmp_path), "--model-name", "bad name!", "--s3-uri", "s3://bucket/m/",
        "--role-arn", "arn:aws:iam::123456789012:user/not-a-role",
    )  # fmt: skip
    assert code == 1
    assert "model_name" in err and "role_arn" in err
    assert "([0-9a-zA-Z][_-]?)+" in err  # the service's own pattern


def test_version(run_cli: RunCli) -> None:
    from bedrock_ft import __version__

    code, out, _ = run_cli("--version")
    assert code == 0
    assert out.strip() == f"bedrock-ft {__version__}"


def test_architectures_json(run_cli: RunCli) -> None:
    code, out, _ = run_cli("architectures", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["mistral"]["native_format"] == "mistral"
    assert rows["qwen2"]["converse"] is False


def test_unknown_command_is_a_usage_error(run_cli: RunCli) -> None:
    code, _, err = run_cli("no-such-command")
    assert code == 2
    assert "No such command" in err


def test_error_reasons_are_printed_as_text_not_markup(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bedrock_ft import cli
    from bedrock_ft._deps import MissingDependencyError

    def fail(**kwargs: object) -> None:
        raise MissingDependencyError(
            "Evaluator needs fmeval; install it with: pip install 'bedrock-ft[eval]'"
        )

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as exited:
        cli.main(["evaluate"])
    assert exited.value.code == 1
    assert "pip install 'bedrock-ft[eval]'" in capsys.readouterr().err  # the [eval] is kept
