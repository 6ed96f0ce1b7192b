"""`bedrock-ft dataset build` from a config file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bedrock_ft.data import synthetic_openorca

RunCli = Callable[..., tuple[int, str, str]]  # the run_cli fixture (tests/conftest.py)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = tmp_path / "orca.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_openorca(400, seed=1)))
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "dataset:\n"
        f"  source: {data}\n"
        "  format: openorca\n"
        "  id_contains: flan\n"
        "  train_size: 0.5\n"
        "  test_size: 0.1\n"
        f"  output: {tmp_path / 'out'}\n"
    )
    return path


def test_dataset_build_from_a_config_file(run_cli: RunCli, config_file: Path) -> None:
    code, out, err = run_cli("dataset", "build", str(config_file), "--section", "dataset", "--json")
    assert code == 0, err
    artifact = json.loads(out)
    assert artifact["kind"] == "dataset"
    assert artifact["record_counts"]["train"] > 0
    assert artifact["dropped"]["id_filter"] > 0
    assert Path(artifact["train_uri"]).exists()
    assert "reading" in err  # progress on stderr

    code, out, err = run_cli("dataset", "build", str(config_file), "--section", "dataset")
    assert code == 1
    assert "holds a previous build" in err
    assert len(err.strip().splitlines()) == 1

    code, out, _ = run_cli("dataset", "build", str(config_file), "--section", "dataset", "--overwrite")
    assert code == 0
    assert out.startswith(f"records: train {artifact['record_counts']['train']}, test")
    assert "dropped id_filter" in out


def test_dataset_build_reports_config_errors_in_one_line(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("format: orca\noutput: out\n")
    code, _, err = run_cli("dataset", "build", str(path))
    assert code == 1
    assert "format: unknown record format 'orca'" in err
