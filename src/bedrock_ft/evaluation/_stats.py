"""Aggregates and the comparison between models: metric means per dataset and category, and a paired
bootstrap confidence interval for each metric's difference."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["aggregate", "paired_bootstrap"]


def _mean(values: Sequence[float]) -> float | None:
    """The mean, or None where no record was scored (JSON has no NaN)."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def aggregate(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str], dataset: str
) -> dict[str, dict[str, float | None]]:
    """Mean of each metric over the scored records (errors are counted apart, never as zeros), for the
    whole dataset (key ``dataset``) and per category (key ``dataset/category``)."""
    groups: dict[str, list[Mapping[str, float]]] = {dataset: []}
    for row in rows:
        if row.get("scores") is None:
            continue
        groups[dataset].append(row["scores"])
        if row.get("category") is not None:
            groups.setdefault(f"{dataset}/{row['category']}", []).append(row["scores"])
    out: dict[str, dict[str, float | None]] = {}
    for key in [dataset, *sorted(k for k in groups if k != dataset)]:
        scored = groups[key]
        out[key] = {name: _mean([s[name] for s in scored if name in s]) for name in names}
    return out


def paired_bootstrap(
    baseline: Sequence[Mapping[str, Any] | None],
    other: Sequence[Mapping[str, Any] | None],
    names: Sequence[str],
    *,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, float | int | bool]]:
    """For each metric: the mean difference ``other - baseline`` over the records both models answered,
    and its percentile bootstrap interval (records resampled together, so the pairing is kept)."""
    import numpy as np

    pairs = [(a, b) for a, b in zip(baseline, other, strict=True) if a is not None and b is not None]
    rng = np.random.default_rng(seed)
    alpha = (1.0 - confidence) / 2.0
    out: dict[str, dict[str, float | int | bool]] = {}
    for name in names:
        kept = [(a[name], b[name]) for a, b in pairs if not (math.isnan(a[name]) or math.isnan(b[name]))]
        if not kept:
            continue
        diffs = np.array([b - a for a, b in kept])
        means = _resampled_means(diffs, samples, rng)
        low = float(np.quantile(means, alpha))
        high = float(np.quantile(means, 1.0 - alpha))
        out[name] = {
            "baseline": float(np.mean([a for a, _ in kept])),
            "value": float(np.mean([b for _, b in kept])),
            "delta": float(diffs.mean()),
            "ci_low": low,
            "ci_high": high,
            "records": len(kept),
            "significant": bool(low > 0 or high < 0),
        }
    return out


def _resampled_means(diffs: Any, samples: int, rng: Any, *, budget: int = 4_000_000) -> Any:
    """The means of ``samples`` resamples of ``diffs``, drawn a chunk at a time so memory stays bounded
    (about ``budget`` indices at once) however many records there are."""
    import numpy as np

    n = len(diffs)
    chunk = max(1, budget // n)
    parts = []
    for start in range(0, samples, chunk):
        picks = rng.integers(0, n, size=(min(chunk, samples - start), n))
        parts.append(diffs[picks].mean(axis=1))
    return np.concatenate(parts)
