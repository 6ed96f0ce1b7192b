"""Where raw records come from. Every source is read as a stream, never loaded whole (but see JSON arrays).

- JSON Lines, JSON arrays, CSV: read record by record here, so a bad line is reported by its file and
  number and mixed-type columns (a number where text was expected) reach the format as they are and are
  counted, instead of failing the whole file in an Arrow reader. Text is UTF-8, with or without a BOM.
  A JSON array is one document, so it is parsed in memory; JSON Lines is the streaming format.
- Parquet: read batch by batch with pyarrow.
- A local directory of data files: every data file at its top level, sorted by name, read as above.
- A hub id, or a local dataset repository (a README.md card, a loading script, or data only in
  subfolders): ``datasets.load_dataset`` (Arrow, memory-mapped), then iterated in batches; a local
  repository's Arrow cache goes to the build's work directory, so nothing is left behind.
  ``save_to_disk`` directories with ``load_from_disk``.
- ``s3://`` objects: downloaded to the build's work directory through boto3 first (streamed to disk).
- In memory: a list (or any iterable) of dicts, a ``datasets.Dataset`` or ``IterableDataset``.

``skip`` names files (local paths and ``s3://`` URIs) never read from a directory or prefix: the build
passes its own output files, so an output inside the source is not read back as data.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bedrock_ft.data._formats import UnreadableLine
from bedrock_ft.errors import AwsError, DatasetError, translate_client_errors

__all__ = ["FILE_TYPES", "RecordSource", "open_source"]

# suffix -> source type
FILE_TYPES = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class RecordSource:
    """An iterable of ``(record, location)``: location says where a record sits ("data.jsonl line 7")."""

    description: str
    records: Iterable[tuple[Any, str | None]]
    total: int | None = None
    """Number of records when known up front (for the progress bar)."""

    def __iter__(self) -> Iterator[tuple[Any, str | None]]:
        return iter(self.records)


def open_source(
    source: Any,
    *,
    source_type: str = "auto",
    hub_config: str | None = None,
    split: str = "train",
    work_dir: Path,
    aws: Any = None,
    batch_size: int = 1000,
    skip: Collection[str] = (),
) -> RecordSource:
    """A :class:`RecordSource` for a configured source string or an in-memory one."""
    if source is None:
        raise DatasetError(
            "no source: set `source` in the config, or pass records as DatasetBuilder(config, source=...)",
            field="source",
        )
    if isinstance(source, Path):
        source = str(source)
    if isinstance(source, str):
        if source.startswith("s3://"):
            files = _download_s3(source, work_dir / "source", aws, skip)
            return _files(files, source_type, label=source, batch_size=batch_size)
        path = Path(source).expanduser()
        if source_type == "hub" or (
            source_type == "auto" and not path.exists() and _looks_like_hub_id(source)
        ):
            return _hub(source, hub_config, split, batch_size)
        if not path.exists():
            raise DatasetError(f"source {source}: no such file or directory", field="source")
        if path.is_dir():
            if source_type == "disk" or (
                (path / "dataset_info.json").exists() and (path / "state.json").exists()
            ):
                return _disk(path, split, batch_size)
            skipped = {Path(s) for s in skip if not s.startswith("s3://")}
            kinds = set(FILE_TYPES.values()) if source_type == "auto" else {source_type}
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and FILE_TYPES.get(p.suffix) in kinds and p.resolve() not in skipped
            )
            if source_type == "auto" and _is_dataset_repo(path, files):
                if any(s.parent.is_relative_to(path.resolve()) for s in skipped):
                    raise DatasetError(
                        f"source {path}: the output is inside this dataset repository, where "
                        "datasets.load_dataset may read it back as data; choose an output elsewhere, "
                        "or point `source` at the data files",
                        field="output",
                    )
                return _hub(str(path), hub_config, split, batch_size, cache_dir=work_dir / "hf-cache")
            if source_type == "auto":
                _refuse_split_layout(path, files)
            return _files(files, source_type, label=str(path), batch_size=batch_size)
        if source_type == "disk":
            raise DatasetError(
                f"source {path}: source_type 'disk' needs a save_to_disk directory", field="source"
            )
        return _files([path], source_type, label=str(path), batch_size=batch_size)
    if isinstance(source, Mapping):  # also a DatasetDict
        raise DatasetError(
            "source: expected records (a list of dicts or a datasets.Dataset), got a mapping; "
            "for a DatasetDict pick a split, e.g. source=ds['train']",
            field="source",
        )
    if _is_hf_dataset(source):
        count = f" ({len(source)} records)" if isinstance(source, Sized) else ""
        return _dataset(source, f"in-memory datasets.{type(source).__name__}{count}", batch_size)
    if isinstance(source, Iterable) and not isinstance(source, str | bytes):
        total = len(source) if isinstance(source, Sized) else None
        label = f"in-memory records ({total})" if total is not None else "in-memory records"
        return RecordSource(label, ((record, None) for record in source), total)
    raise DatasetError(f"source: can't read records from a {type(source).__name__}", field="source")


def _is_dataset_repo(path: Path, data_files: list[Path]) -> bool:
    """A dataset card or loading script, or no data file at the top level: ``load_dataset``'s job."""
    return not data_files or (path / "README.md").exists() or any(path.glob("*.py"))


_SPLIT_WORDS = {
    "train": "train", "training": "train",
    "test": "test", "testing": "test", "eval": "test", "evaluation": "test",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
}  # fmt: skip
"""File-name words by which ``datasets`` assigns a data file to a split."""


def _refuse_split_layout(path: Path, files: list[Path]) -> None:
    """A plain directory is read whole; one laid out as several splits must not be mixed into one."""
    splits: dict[str, str] = {}
    for p in files:
        for word in re.split(r"[^a-z]+", p.stem.lower()):
            splits.setdefault(_SPLIT_WORDS.get(word, ""), p.name)
    splits.pop("", None)
    if len(splits) > 1:
        named = ", ".join(sorted(splits.values()))
        raise DatasetError(
            f"source {path}: holds several splits ({named}), and a directory is read whole; point "
            "`source` at one file, or set source_type='hub' to read `split` with datasets.load_dataset",
            field="source",
        )


def _looks_like_hub_id(value: str) -> bool:
    """``org/name`` or ``name``, no file suffix, not a relative or absolute path."""
    if value.startswith((".", "/", "~")) or Path(value).suffix in FILE_TYPES or value.count("/") > 1:
        return False
    return all(part and all(c.isalnum() or c in "-_." for c in part) for part in value.split("/"))


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("datasets.") and hasattr(obj, "column_names")


# --- files ---------------------------------------------------------------------------------------------


def _files(files: list[Path], source_type: str, *, label: str, batch_size: int) -> RecordSource:
    if not files:
        raise DatasetError(f"source {label}: no data files found", field="source")
    kinds = {source_type if source_type not in ("auto", "hub") else FILE_TYPES.get(p.suffix) for p in files}
    if None in kinds:
        bad = next(p for p in files if FILE_TYPES.get(p.suffix) is None)
        raise DatasetError(
            f"source {bad}: unknown file type {bad.suffix or '(none)'!r}; use one of "
            f"{', '.join(FILE_TYPES)} or set source_type",
            field="source",
        )
    if len(kinds) > 1:
        raise DatasetError(f"source {label}: mixes file types {sorted(map(str, kinds))}", field="source")
    kind = kinds.pop()
    readers = {"jsonl": _read_json, "json": _read_json, "csv": _read_csv}

    def records() -> Iterator[tuple[Any, str | None]]:
        for path in files:
            if kind == "parquet":
                yield from _read_parquet(path, batch_size)
            else:
                yield from readers[str(kind)](path)

    return RecordSource(label, records())


def _lines(path: Path, fh: BinaryIO) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 file (a leading BOM dropped); a bad byte names its line.

    Lines end at ``\n``, ``\r\n`` or a bare ``\r`` (old Mac exports), as in text mode.
    """
    lineno = 0
    for chunk in fh:
        for raw in chunk.splitlines(keepends=True) if b"\r" in chunk else (chunk,):
            lineno += 1
            try:
                yield lineno, (raw.removeprefix(codecs.BOM_UTF8) if lineno == 1 else raw).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}: line {lineno}: not UTF-8 text ({exc.reason})") from None


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise DatasetError(f"source {path}: can't read: {exc}", field="source") from None


def _read_json(path: Path) -> Iterator[tuple[Any, str | None]]:
    """JSON Lines, or one JSON array of records (detected by its first character)."""
    with _open(path) as fh:
        if fh.read(4096).removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"["):
            fh.seek(0)
            data = fh.read()  # one JSON document: parsed whole, in memory
            try:
                records = json.loads(data.decode("utf-8-sig"))
            except UnicodeDecodeError as exc:
                at = data.count(b"\n", 0, exc.start) + 1
                raise DatasetError(f"{path}: line {at}: not UTF-8 text ({exc.reason})") from None
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
            del data
            for i, record in enumerate(records):
                yield record, f"{path.name} item {i}"
            return
        fh.seek(0)
        for lineno, line in _lines(path, fh):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                # dropped and counted, or an error: on_invalid decides
                record = UnreadableLine(
                    f"{path}: line {lineno}", f"not valid JSON Lines ({exc.msg} at column {exc.colno})"
                )
            yield record, f"{path.name} line {lineno}"


def _read_csv(path: Path) -> Iterator[tuple[Any, str | None]]:
    """CSV with a header row; every value stays text (no type guessing: "12" is an answer, not a number)."""
    with _open(path) as fh:
        reader = csv.DictReader(text for _, text in _lines(path, fh))
        try:
            for record in reader:
                yield record, f"{path.name} line {reader.line_num}"
        except csv.Error as exc:
            raise DatasetError(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None


def _read_parquet(path: Path, batch_size: int) -> Iterator[tuple[Any, str | None]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for record in batch.to_pylist():
            yield record, f"{path.name} row {row}"
            row += 1


# --- datasets ------------------------------------------------------------------------------------------


def _dataset(ds: Any, description: str, batch_size: int) -> RecordSource:
    if hasattr(ds, "iter") and hasattr(ds, "__len__"):  # a map-style Dataset: Arrow batches

        def records() -> Iterator[tuple[Any, str | None]]:
            for batch in ds.iter(batch_size=batch_size):
                columns = list(batch)
                for values in zip(*(batch[c] for c in columns), strict=True):
                    yield dict(zip(columns, values, strict=True)), None

        return RecordSource(description, records(), len(ds))
    return RecordSource(description, ((record, None) for record in ds))  # an IterableDataset


def _hub(
    name: str, hub_config: str | None, split: str, batch_size: int, *, cache_dir: Path | None = None
) -> RecordSource:
    """``load_dataset``: a hub id uses the shared Hugging Face cache, a local repository ``cache_dir``."""
    from bedrock_ft._deps import require

    require("datasets", extra="train", feature="reading hub datasets")
    import datasets

    try:
        extra = {"cache_dir": str(cache_dir)} if cache_dir is not None else {}
        ds = datasets.load_dataset(name, name=hub_config, split=split, **extra)
    except (ConnectionError, TimeoutError) as exc:
        raise DatasetError(
            f"source {name}: can't reach the Hugging Face hub ({exc}); download the dataset first, or point "
            "`source` at local files",
            field="source",
        ) from exc
    except Exception as exc:  # datasets raises many kinds; all mean "this source can't be read"
        detail = f"{type(exc).__name__}: {exc}"
        raise DatasetError(f"source {name}: can't load the dataset ({detail})", field="source") from exc
    if isinstance(ds, datasets.DatasetDict):  # pragma: no cover - split is always given
        raise DatasetError(f"source {name}: pick a split of {list(ds)}", field="split")
    return _dataset(ds, f"{name} [{split}]", batch_size)


def _disk(path: Path, split: str, batch_size: int) -> RecordSource:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DatasetError(f"source {path}: no split {split!r}; it has {sorted(ds)}", field="split")
        ds = ds[split]
    return _dataset(ds, f"{path} [{split}]", batch_size)


# --- S3 ------------------------------------------------------------------------------------------------


def _download_s3(uri: str, dest: Path, aws: Any, skip: Collection[str] = ()) -> list[Path]:
    """Download one object, or every data file under a prefix (sorted by key, ``skip`` left out)."""
    from bedrock_ft.aws import AwsConfig, split_s3_uri

    s3 = (aws or AwsConfig()).client("s3")
    bucket, key = split_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with translate_client_errors():
            if key and not key.endswith("/") and Path(key).suffix in FILE_TYPES:
                keys = [key]
            else:
                prefix = key if not key or key.endswith("/") else key + "/"
                keys = []
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    keys += [
                        o["Key"]
                        for o in page.get("Contents", [])
                        if Path(o["Key"]).suffix in FILE_TYPES and f"s3://{bucket}/{o['Key']}" not in skip
                    ]
                keys.sort()
            if not keys:
                raise DatasetError(
                    f"source {uri}: no data files ({', '.join(FILE_TYPES)}) there", field="source"
                )
            files = []
            for i, k in enumerate(keys):
                target = dest / f"{i:05d}" / Path(k).name  # keeps the object's name for error messages
                target.parent.mkdir()
                s3.download_file(bucket, k, str(target))
                files.append(target)
            return files
    except AwsError as exc:
        raise DatasetError(f"source {uri}: {exc}", field="source") from exc
