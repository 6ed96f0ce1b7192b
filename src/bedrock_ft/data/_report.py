"""A dataset build's statistics as a few readable lines (the CLI and the quickstart print them)."""

from __future__ import annotations

from bedrock_ft.artifacts import DatasetArtifact

__all__ = ["summarize"]


def summarize(artifact: DatasetArtifact, *, examples: int = 1) -> list[str]:
    """Counts per split, drops per reason (with the first ``examples`` of each), token lengths, template."""
    counts = artifact.record_counts
    read = f"read {artifact.source_records}" if artifact.source_records is not None else "read ?"
    dropped = sum(artifact.dropped.values())
    lines = [
        f"records: train {counts.get('train', 0)}, test {counts.get('test', 0)} "
        f"({read}, dropped {dropped}) from {artifact.source or 'an unnamed source'}"
    ]
    for reason, count in artifact.dropped.items():
        shown = artifact.dropped_examples.get(reason, ())[:examples]
        detail = "; ".join(
            f"record {d.index}" + (f", field {d.field!r}" if d.field else "") + f": {d.detail}" for d in shown
        )
        lines.append(f"  dropped {reason}: {count}" + (f" (e.g. {detail})" if detail else ""))
    stats = artifact.token_stats
    if stats is not None:
        over = f"; {stats.over_max_length:.1%} over max_length {stats.max_length}" if stats.max_length else ""
        lines.append(
            f"tokens per training record: min {stats.min}, median {stats.median:g}, "
            f"p95 {stats.p95:g}, max {stats.max}{over}"
        )
    lines.append(f"chat template: {artifact.chat_template_name or 'none (no tokenizer or template given)'}")
    lines.append(f"train: {artifact.train_uri}")
    if artifact.test_uri:
        lines.append(f"test:  {artifact.test_uri}")
    if artifact.eval_uri:
        lines.append(f"eval:  {artifact.eval_uri}")
    return lines
