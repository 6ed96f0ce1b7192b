"""Seeded synthetic data, generated in the repo and never downloaded.

- :func:`synthetic_qa`: short questions with one exact answer (arithmetic, capitals, what comes next,
  opposites) in the ``qa`` format. A 135M model learns the terse answer style within a few minutes of
  CPU training, so exact-match evaluation shows the gain; the base model answers in full sentences.
- :func:`build_synthetic_dataset`: the above as a built dataset, in one call (the quickstart's data).
- :func:`synthetic_openorca`: OpenOrca-shaped records (``id``, ``system_prompt``, ``question``,
  ``response``) for examples and benchmarks that must run offline.

The same ``n`` and ``seed`` always give the same records, on every machine (Python's ``random``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bedrock_ft.artifacts import DatasetArtifact

__all__ = ["QA_CATEGORIES", "build_synthetic_dataset", "synthetic_openorca", "synthetic_qa"]

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Russia": "Moscow", "Egypt": "Cairo",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Brazil": "Brasilia", "Argentina": "Buenos Aires",
    "Peru": "Lima", "Chile": "Santiago", "Kenya": "Nairobi", "Greece": "Athens", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Austria": "Vienna", "Ireland": "Dublin", "Belgium": "Brussels", "Netherlands": "Amsterdam",
    "Hungary": "Budapest", "Czechia": "Prague", "Turkey": "Ankara", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "South Korea": "Seoul", "Indonesia": "Jakarta", "Philippines": "Manila",
    "Australia": "Canberra", "New Zealand": "Wellington", "Cuba": "Havana", "Colombia": "Bogota",
    "Morocco": "Rabat", "Nigeria": "Abuja", "Ethiopia": "Addis Ababa", "Iran": "Tehran", "Iraq": "Baghdad",
    "Israel": "Jerusalem", "Ukraine": "Kyiv", "Romania": "Bucharest", "Iceland": "Reykjavik",
    "Switzerland": "Bern", "Scotland": "Edinburgh",
}  # fmt: skip

OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad", "old": "young",
    "light": "dark", "open": "closed", "early": "late", "full": "empty", "hard": "soft", "high": "low",
    "left": "right", "long": "short", "loud": "quiet", "rich": "poor", "strong": "weak", "thick": "thin",
    "wet": "dry", "clean": "dirty", "first": "last", "inside": "outside", "push": "pull", "win": "lose",
    "day": "night", "north": "south", "east": "west", "true": "false", "buy": "sell", "give": "take",
}  # fmt: skip

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

QA = tuple[str, str]  # (question, answer)


def _arithmetic() -> list[QA]:
    out: list[QA] = []
    for a in range(21):
        for b in range(21):
            out.append((f"What is {a} plus {b}?", str(a + b)))
            if a >= b:
                out.append((f"What is {a} minus {b}?", str(a - b)))
    for a in range(2, 10):
        for b in range(2, 10):
            out.append((f"What is {a} times {b}?", str(a * b)))
    return out


def _capitals() -> list[QA]:
    return [(f"What is the capital of {country}?", city) for country, city in CAPITALS.items()]


def _next_item() -> list[QA]:
    out = [(f"What day comes after {d}?", DAYS[(i + 1) % 7]) for i, d in enumerate(DAYS)]
    out += [(f"What month comes after {m}?", MONTHS[(i + 1) % 12]) for i, m in enumerate(MONTHS)]
    out += [(f"What letter comes after {chr(c)}?", chr(c + 1)) for c in range(ord("A"), ord("Z"))]
    out += [(f"What number comes after {n}?", str(n + 1)) for n in range(100)]
    return out


def _opposites() -> list[QA]:
    pairs = {**OPPOSITES, **{v: k for k, v in OPPOSITES.items()}}
    return [(f"What is the opposite of {word}?", other) for word, other in pairs.items()]


QA_CATEGORIES: dict[str, Callable[[], list[QA]]] = {
    "arithmetic": _arithmetic,
    "capitals": _capitals,
    "next": _next_item,
    "opposites": _opposites,
}
_WEIGHTS = {"arithmetic": 0.4, "capitals": 0.2, "next": 0.2, "opposites": 0.2}


def synthetic_qa(
    n: int = 200, seed: int = 0, *, categories: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """``n`` distinct question/answer records in the ``qa`` format, with a ``category`` each.

    Categories are mixed about 40% arithmetic and 20% each of the others, for as long as each lasts.
    ``n`` may not exceed the distinct questions available (a ValueError says how many).
    """
    names = list(categories) if categories is not None else list(QA_CATEGORIES)
    unknown = [c for c in names if c not in QA_CATEGORIES]
    if unknown or not names:
        raise ValueError(f"unknown categories {unknown}; choose from {sorted(QA_CATEGORIES)}")
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    rng = random.Random(seed)
    pools: dict[str, list[QA]] = {}
    for name in names:
        pool = QA_CATEGORIES[name]()
        rng.shuffle(pool)
        pools[name] = pool
    available = sum(len(p) for p in pools.values())
    if n > available:
        raise ValueError(
            f"asked for {n} questions, but the chosen categories hold only {available} distinct ones"
        )
    out: list[dict[str, str]] = []
    while len(out) < n:
        live = [c for c in names if pools[c]]
        category = rng.choices(live, weights=[_WEIGHTS.get(c, 0.1) for c in live])[0]
        question, answer = pools[category].pop()
        out.append({"question": question, "answer": answer, "category": category})
    return out


def build_synthetic_dataset(
    output: str | Path,
    *,
    n: int = 300,
    seed: int = 0,
    test_size: float | int = 0.2,
    tokenizer: str | None = None,
    chat_template: str | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    **config: Any,
) -> DatasetArtifact:
    """Build :func:`synthetic_qa` records into ``output`` (a directory or s3:// prefix) and return the
    artifact. ``tokenizer`` ("embedded", a model directory or hub id) adds token statistics and the
    default chat template; other keyword arguments go to :class:`DatasetConfig`."""
    from bedrock_ft.data._builder import DatasetBuilder
    from bedrock_ft.data._config import DatasetConfig

    cfg = DatasetConfig(
        format="qa",
        output=str(output),
        test_size=test_size,
        seed=seed,
        tokenizer=tokenizer,
        chat_template=chat_template,
        overwrite=overwrite,
        **config,
    )
    return DatasetBuilder(cfg, source=synthetic_qa(n, seed), progress=progress).build()


# --- OpenOrca-shaped records ---------------------------------------------------------------------------

_ORCA_SOURCES = ("flan", "cot", "niv", "t0")
_ORCA_WEIGHTS = (0.4, 0.2, 0.25, 0.15)
_ORCA_SYSTEMS = (
    "",
    "You are an AI assistant. You will be given a task. You must generate a detailed and long answer.",
    "You are a helpful assistant, who always provides an explanation. Answer as if to a five year old.",
    "You are an AI assistant that follows instruction extremely well. Help as much as you can.",
)
_WORDS = (
    "river", "model", "answer", "question", "summary", "city", "history", "science", "music", "garden",
    "language", "number", "letter", "reason", "story", "animal", "planet", "market", "energy", "bridge",
)  # fmt: skip


def synthetic_openorca(n: int, seed: int = 0) -> Iterator[dict[str, str]]:
    """``n`` OpenOrca-shaped records: ids like ``flan.123``/``cot.45``/``niv.6``/``t0.7`` (about 40% flan),
    a system prompt (sometimes empty), a question and a response of realistic length. A generator."""
    rng = random.Random(seed)
    for i in range(n):
        source = rng.choices(_ORCA_SOURCES, weights=_ORCA_WEIGHTS)[0]
        question = " ".join(rng.choices(_WORDS, k=rng.randint(20, 120)))
        response = " ".join(rng.choices(_WORDS, k=rng.randint(10, 200)))
        yield {
            "id": f"{source}.{i}",
            "system_prompt": rng.choice(_ORCA_SYSTEMS),
            "question": f"{question.capitalize()}?",
            "response": f"{response.capitalize()}.",
        }
