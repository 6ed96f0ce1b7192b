"""How sources are read: local directories, encodings, and a build's own output inside its source."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.artifacts import DatasetArtifact
from bedrock_ft.data import TEST_FILE, TRAIN_FILE, DatasetBuilder, DatasetConfig, synthetic_qa
from bedrock_ft.errors import DatasetError

ROWS = synthetic_qa(12, seed=4)


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def build(source: Any, output: Path, **config: Any) -> DatasetArtifact:
    cfg = DatasetConfig(source=str(source), output=str(output), format="qa", test_size=2, **config)
    return DatasetBuilder(cfg).build()


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """datasets' shared cache, moved where the test can see whether anything was written to it."""
    import datasets

    cache = tmp_path / "hf-datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def written(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


# --- local directories --------------------------------------------------------------------------------


def test_a_directory_of_data_files_is_read_by_our_readers(tmp_path: Path, hf_cache: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.jsonl").write_text(jsonl(ROWS[6:]))
    (tmp_path / "in" / "a.jsonl").write_text(jsonl(ROWS[:6]))
    whole = tmp_path / "whole.jsonl"
    whole.write_text(jsonl(ROWS))

    art = build(tmp_path / "in", tmp_path / "out")
    reference = build(whole, tmp_path / "ref")
    assert art.source_records == 12
    assert Path(art.train_uri).read_bytes() == Path(reference.train_uri).read_bytes()  # a, then b
    assert written(hf_cache) == []  # no Arrow copy of the data left in the shared cache


def test_a_bad_line_in_a_directory_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.jsonl").write_text(jsonl(ROWS[:2]) + '{"question": "Q", \n')
    with pytest.raises(DatasetError, match=r"x\.jsonl: line 3: not valid JSON Lines"):
        build(tmp_path / "in", tmp_path / "out", on_invalid="error")


def test_a_directory_laid_out_as_splits_is_not_mixed_into_one(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "train.jsonl").write_text(jsonl(ROWS[:8]))
    (tmp_path / "in" / "test.jsonl").write_text(jsonl(ROWS[8:]))
    with pytest.raises(
        DatasetError, match=r"several splits \(test\.jsonl, train\.jsonl\).*source_type='hub'"
    ):
        build(tmp_path / "in", tmp_path / "out")
    art = build(tmp_path / "in", tmp_path / "out", source_type="hub")  # datasets picks the train split
    assert art.source_records == 8


def test_a_dataset_repository_goes_to_load_dataset_with_a_private_cache(
    tmp_path: Path, hf_cache: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# QA\n")
    (repo / "qa.jsonl").write_text(jsonl(ROWS))
    art = build(repo, tmp_path / "out", work_dir=str(tmp_path / "work"))
    assert art.source == f"{repo} [train]"  # load_dataset's description, not a file listing
    assert art.source_records == 12
    assert written(hf_cache) == []
    assert written(tmp_path / "work") == []  # the private cache went with the work directory


def test_the_output_inside_a_dataset_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# QA\n")
    (repo / "qa.jsonl").write_text(jsonl(ROWS))
    with pytest.raises(DatasetError, match="output is inside this dataset repository") as info:
        build(repo, repo / "out")
    assert info.value.field == "output"


def test_the_output_is_never_read_back_as_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "qa.jsonl").write_text(jsonl(ROWS))
    first = build(data, data)  # the output is the source directory itself
    assert {p.name for p in data.iterdir()} >= {"manifest.json", TRAIN_FILE, TEST_FILE}
    second = build(data, data, overwrite=True)
    assert second.source_records == first.source_records == 12
    assert Path(second.train_uri).read_bytes() == Path(first.train_uri).read_bytes()


# --- encodings ----------------------------------------------------------------------------------------


def _write(path: Path, kind: str, rows: list[dict[str, Any]], *, bom: bool = False) -> Path:
    if kind == "jsonl":
        text = jsonl(rows)
    elif kind == "json":
        text = json.dumps(rows, indent=1)
    else:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        text = path.read_text()
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv"])
def test_a_utf8_bom_is_ignored(tmp_path: Path, kind: str) -> None:
    plain = build(_write(tmp_path / f"plain.{kind}", kind, ROWS), tmp_path / "plain")
    with_bom = build(_write(tmp_path / f"bom.{kind}", kind, ROWS, bom=True), tmp_path / "bom")
    assert with_bom.dropped == {}
    assert Path(with_bom.train_uri).read_bytes() == Path(plain.train_uri).read_bytes()


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv"])
def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path / f"latin1.{kind}", kind, ROWS)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"?", b"\xe9?", 1)  # a Latin-1 e-acute on the third line
    path.write_bytes(b"".join(lines))
    with pytest.raises(DatasetError, match=rf"latin1\.{kind}: line 3: not UTF-8 text"):
        build(path, tmp_path / "out")


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_windows_and_old_mac_line_endings_read_like_unix_ones(
    tmp_path: Path, kind: str, newline: bytes
) -> None:
    plain = build(_write(tmp_path / f"plain.{kind}", kind, ROWS), tmp_path / "plain")
    other = tmp_path / f"other.{kind}"
    unix = _write(tmp_path / f"unix.{kind}", kind, ROWS).read_bytes().replace(b"\r\n", b"\n")
    other.write_bytes(unix.replace(b"\n", newline))
    built = build(other, tmp_path / "other")
    assert built.dropped == {}
    assert Path(built.train_uri).read_bytes() == Path(plain.train_uri).read_bytes()
