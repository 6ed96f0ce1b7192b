"""DatasetBuilder: raw records in, templated train/test splits and a DatasetArtifact out.

The build streams. Records are read one batch at a time, formatted, filtered, templated and counted,
and the kept ones are appended to an Arrow file in a work directory. ``datasets`` then memory-maps
that file for the seeded split and the writing, so memory stays flat however large the input is.

    ds = DatasetBuilder(DatasetConfig(source="data.jsonl", format="qa", output="out")).build()
    ds = DatasetBuilder(config, source=[{"question": ..., "answer": ...}, ...]).build()
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bedrock_ft.artifacts import DatasetArtifact, TokenStats
from bedrock_ft.chat_templates import ChatTemplate, resolve_chat_template
from bedrock_ft.data._config import DatasetConfig
from bedrock_ft.data._filters import DropLog, IdFilter, RecordProcessor
from bedrock_ft.data._formats import get_format
from bedrock_ft.data._sources import RecordSource, open_source
from bedrock_ft.data._splits import split_counts, split_indices
from bedrock_ft.data._writers import (
    BUILD_FILES,
    EVAL_FILE,
    TEST_FILE,
    TRAIN_FILE,
    OutputTarget,
    eval_record,
    open_output,
    write_jsonl,
)
from bedrock_ft.errors import ConfigError, ConfigProblem, DatasetError
from bedrock_ft.progress import Progress, show_bar

__all__ = ["DatasetBuilder"]

logger = logging.getLogger("bedrock_ft.data")

Predicate = Callable[[Mapping[str, Any]], bool]


class DatasetBuilder:
    """Builds the splits a :class:`DatasetConfig` describes.

    - ``source``: records in memory (a list or iterable of dicts, a ``datasets.Dataset``), or a path or
      URI; it replaces ``config.source`` (which is then not needed);
    - ``predicate``: keep only raw records for which ``predicate(record)`` is true (after the id filter);
    - ``tokenizer``: a loaded Hugging Face tokenizer, instead of loading ``config.tokenizer``;
    - ``progress``: receives one line per step;
    - ``progress_bar``: ``datasets``' progress bars while records are read and written (None: when
      stderr is a terminal); their global setting is restored afterwards.
    """

    def __init__(
        self,
        config: DatasetConfig,
        *,
        source: Any = None,
        predicate: Predicate | None = None,
        tokenizer: Any = None,
        progress: Progress | None = None,
        progress_bar: bool | None = None,
    ) -> None:
        if not isinstance(config, DatasetConfig):
            raise TypeError(f"DatasetBuilder expects a DatasetConfig, got {type(config).__name__}")
        self.config = config
        self.source = source if source is not None else config.source
        self.predicate = predicate
        self._tokenizer = tokenizer
        self._say = progress or logger.info
        self._progress_bar = progress_bar

    def build(self) -> DatasetArtifact:
        """Read, filter, split and write; returns the artifact (also written as ``manifest.json``)."""
        from bedrock_ft._deps import require

        require("datasets", "pyarrow", "numpy", extra="train", feature="DatasetBuilder")
        with _datasets_bars(show_bar(self._progress_bar)):
            return self._build()

    def _build(self) -> DatasetArtifact:
        cfg = self.config
        fmt = get_format(cfg.format)
        with self._work_dir() as work:
            target = open_output(cfg.output, aws=cfg.aws, staging=work)
            target.check(overwrite=cfg.overwrite)  # fail before the work, not after it
            tokenizer = self._load_tokenizer()
            template = resolve_chat_template(cfg.chat_template, tokenizer)
            drops = DropLog(keep_examples=cfg.report_dropped)
            processor = RecordProcessor(
                fmt=fmt,
                drops=drops,
                id_filter=IdFilter(cfg.id_field, cfg.id_contains, cfg.id_regex),
                predicate=self.predicate,
                system_prompt=cfg.system_prompt,
                category_field=cfg.category_field,
                deduplicate=cfg.deduplicate,
                render=_renderer(template, tokenizer) if template is not None else None,
                tokenizer=tokenizer,
                max_tokens=cfg.max_tokens,
                keep_text=cfg.text_column,
                on_invalid=cfg.on_invalid,
            )
            source = open_source(
                self.source,
                source_type=cfg.source_type,
                hub_config=cfg.hub_config,
                split=cfg.split,
                work_dir=work,
                aws=cfg.aws,
                batch_size=cfg.batch_size,
                skip={target.uri(name) for name in BUILD_FILES},  # an output inside the source
            )
            self._say(f"reading {source.description} as {fmt.name}")
            arrow_path, read = _process(source, processor, work / "records.arrow", cfg.batch_size)
            return self._split_and_write(
                arrow_path, read, drops=drops, source=source, template=template, target=target
            )

    # --- steps -----------------------------------------------------------------------------------

    def _split_and_write(
        self,
        arrow_path: Path,
        read: int,
        *,
        drops: DropLog,
        source: RecordSource,
        template: ChatTemplate | None,
        target: OutputTarget,
    ) -> DatasetArtifact:
        import datasets

        cfg = self.config
        records = datasets.Dataset.from_file(str(arrow_path))
        n = len(records)
        self._say(f"read {read} records, kept {n}; dropped: {drops.summary()}")
        if n == 0:
            raise DatasetError(
                f"no records left to split: read {read} from {source.description}, dropped all "
                f"({drops.summary()}); check the format and the filters"
            )
        n_train, n_test = split_counts(n, cfg.train_size, cfg.test_size)
        train_idx, test_idx = split_indices(n, n_train, n_test, cfg.seed)

        token_stats = None
        column = records.data.column("n_tokens")
        if column.null_count == 0:  # counted for every record: a tokenizer was given
            token_stats = _token_stats(column.to_numpy()[train_idx], cfg.max_length)

        target.begin(overwrite=cfg.overwrite)
        try:  # the target only stages until finish(); abort() leaves a previous build as it was
            self._say(f"writing {n_train} train and {n_test} test records to {cfg.output}")
            rows = _rows(records, train_idx, cfg.batch_size, text=cfg.text_column)
            self._write(target, TRAIN_FILE, rows)
            written = [TRAIN_FILE]
            if n_test:
                rows = _rows(records, test_idx, cfg.batch_size, text=cfg.text_column)
                self._write(target, TEST_FILE, rows)
                written.append(TEST_FILE)
                if cfg.eval_file:
                    self._write(target, EVAL_FILE, _eval_rows(records, test_idx, cfg.batch_size))
                    written.append(EVAL_FILE)
            target.remove([name for name in (TEST_FILE, EVAL_FILE) if name not in written])

            artifact = DatasetArtifact(
                train_uri=target.uri(TRAIN_FILE),
                test_uri=target.uri(TEST_FILE) if TEST_FILE in written else None,
                eval_uri=target.uri(EVAL_FILE) if EVAL_FILE in written else None,
                format=cfg.format,
                chat_template_name=template.name if template else None,
                chat_template=template.source if template else None,
                record_counts={"train": n_train, "test": n_test},
                dropped=dict(sorted(drops.counts.items())),
                dropped_examples={k: tuple(v) for k, v in sorted(drops.examples.items())},
                token_stats=token_stats,
                source=source.description,
                source_records=read,
                text_column=cfg.text_column,
                config_hash=cfg.config_hash(),
            )
            target.finish(artifact)  # publishes every file; the manifest goes last
        except BaseException:
            target.abort()
            raise
        self._say(f"wrote {target.uri('manifest.json')}")
        del records
        return artifact

    def _write(self, target: OutputTarget, name: str, rows: Iterator[dict[str, Any]]) -> None:
        with target.open(name) as fh:
            write_jsonl(fh, rows)

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is not None:
            return self._tokenizer
        name = self.config.tokenizer
        if name is None:
            return None
        from bedrock_ft._deps import require

        require("transformers", "jinja2", extra="train", feature="token statistics")
        if name == "embedded":
            from bedrock_ft.models import embedded_model

            name = str(embedded_model(progress=self._say))
        from transformers import AutoTokenizer

        self._say(f"loading the tokenizer of {name}")
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as exc:
            raise ConfigError([ConfigProblem("tokenizer", f"can't load {name!r}: {exc}")]) from None
        return self._tokenizer

    @contextmanager
    def _work_dir(self) -> Iterator[Path]:
        base = self.config.work_dir
        if base is not None:
            Path(base).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bedrock-ft-dataset-", dir=base) as tmp:
            yield Path(tmp)


# --- the streaming pass ------------------------------------------------------------------------------


def _renderer(template: ChatTemplate, tokenizer: Any) -> Callable[[Any], str]:
    tokens = getattr(tokenizer, "special_tokens_map", None) if tokenizer is not None else None
    return template.renderer(tokens)


def _process(
    source: RecordSource, processor: RecordProcessor, path: Path, batch_size: int
) -> tuple[Path, int]:
    """Read every record, keep what the processor keeps, append it to an Arrow stream file."""
    import pyarrow as pa
    from datasets.utils.tqdm import tqdm

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema(
        [
            ("messages", pa.list_(message)),
            ("category", pa.string()),
            ("text", pa.string()),
            ("n_tokens", pa.int32()),
        ]
    )
    read = 0
    bar = tqdm(total=source.total, unit=" records", desc="Building dataset", leave=False)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        batch: list[tuple[int, Any, str | None]] = []

        def flush() -> None:
            kept = processor.process(batch)
            bar.update(len(batch))
            batch.clear()
            if len(kept):
                columns = {
                    "messages": kept.messages,
                    "category": kept.category,
                    "text": kept.text,
                    "n_tokens": kept.n_tokens,
                }
                writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=schema))

        try:
            for record, location in source:
                batch.append((read, record, location))
                read += 1
                if len(batch) >= batch_size:
                    flush()
            flush()
        finally:
            bar.close()
    return path, read


def _rows(records: Any, indices: Any, batch_size: int, *, text: bool) -> Iterator[dict[str, Any]]:
    for batch in records.select(indices).iter(batch_size=batch_size):
        if text:
            for messages, rendered in zip(batch["messages"], batch["text"], strict=True):
                yield {"messages": messages, "text": rendered}
        else:
            for messages in batch["messages"]:
                yield {"messages": messages}


def _eval_rows(records: Any, indices: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    for batch in records.select(indices).iter(batch_size=batch_size):
        for messages, category in zip(batch["messages"], batch["category"], strict=True):
            yield eval_record(messages, category)


def _token_stats(lengths: Any, max_length: int) -> TokenStats:
    import numpy as np

    return TokenStats(
        min=int(lengths.min()),
        median=float(np.median(lengths)),
        p95=float(np.percentile(lengths, 95)),
        max=int(lengths.max()),
        max_length=max_length,
        over_max_length=round(float((lengths > max_length).mean()), 6),
    )


@contextmanager
def _datasets_bars(show: bool) -> Iterator[None]:
    """``datasets``' progress bars on or off for one build, then as they were."""
    from datasets.utils import logging as ds_logging

    was_on = ds_logging.is_progress_bar_enabled()
    (ds_logging.enable_progress_bar if show else ds_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (ds_logging.enable_progress_bar if was_on else ds_logging.disable_progress_bar)()
