"""Aggregates and the comparison between models: metric means per dataset and category, and a paired
bootstrap confidence interval for each metric's difference."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["aggregate", "paired_bootstrap"]


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def aggregate(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str], dataset: str
) -> dict[str, dict[str, float]]:
    """Mean of each metric over the scored records (errors are counted apart, never as zeros), for the
    whole dataset (key ``dataset``) and per category (key ``dataset/category``)."""
    groups: dict[str, list[Mapping[str, float]]] = {dataset: []}
    for row in rows:
        if row.get("scores") is None:
            continue
        groups[dataset].append(row["scores"])
        if row.get("category") is not None:
            groups.setdefault(f"{dataset}/{row['category']}", []).append(row["scores"])
    out: dict[str, dict[str, float]] = {}
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
    n = len(pairs)
    picks = rng.integers(0, n, size=(samples, n)) if n else None
    alpha = (1.0 - confidence) / 2.0
    out: dict[str, dict[str, float | int | bool]] = {}
    for name in names:
        diffs = np.array(
            [b[name] - a[name] for a, b in pairs if not (math.isnan(a[name]) or math.isnan(b[name]))]
        )
        if picks is None or len(diffs) != n or n == 0:
            if len(diffs) == 0:
                continue
            picks_m = rng.integers(0, len(diffs), size=(samples, len(diffs)))
        else:
            picks_m = picks
        means = diffs[picks_m].mean(axis=1)
        low = float(np.quantile(means, alpha))
        high = float(np.quantile(means, 1.0 - alpha))
        out[name] = {
            "baseline": float(np.mean([a[name] for a, _ in pairs])),
            "value": float(np.mean([b[name] for _, b in pairs])),
            "delta": float(diffs.mean()),
            "ci_low": low,
            "ci_high": high,
            "records": len(diffs),
            "significant": bool(low > 0 or high < 0),
        }
    return out
