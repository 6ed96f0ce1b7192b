"""What serving an imported model costs: Custom Model Units x price per CMU-minute, in 5-minute windows."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from bedrock_ft.errors import ConfigError, ConfigProblem

__all__ = ["BILLING_WINDOW_MINUTES", "CostEstimate", "estimate_cost"]

BILLING_WINDOW_MINUTES = 5
"""Bedrock bills an active model copy in 5-minute windows."""


class CostEstimate(BaseModel):
    """The inputs and the result, so a report can show how the figure was reached."""

    model_config = ConfigDict(frozen=True)

    cmus_per_copy: int = Field(description="Custom Model Units per model copy (GetImportedModel).")
    copies: int = Field(description="Model copies serving at once.")
    active_minutes: float = Field(description="Minutes the copies are active.")
    windows: int = Field(description="5-minute windows billed (a started window counts whole).")
    price_per_cmu_minute: float = Field(description="USD per CMU per minute, for the region.")
    cost: float = Field(description="USD: cmus x copies x price x 5 x windows.")


def estimate_cost(
    cmus_per_copy: int, *, price_per_cmu_minute: float, active_minutes: float, copies: int = 1
) -> CostEstimate:
    """The cost of ``copies`` copies active for ``active_minutes``, each window of 5 minutes billed whole.

    The price per CMU-minute differs by region and changes over time: take it from the Bedrock pricing
    page. This estimates serving only, not storage.
    """
    problems = []
    if cmus_per_copy < 1:
        problems.append(ConfigProblem("cmus_per_copy", f"must be at least 1, got {cmus_per_copy}"))
    if copies < 1:
        problems.append(ConfigProblem("copies", f"must be at least 1, got {copies}"))
    for name, value in (("price_per_cmu_minute", price_per_cmu_minute), ("active_minutes", active_minutes)):
        if not math.isfinite(value) or value < 0:
            problems.append(ConfigProblem(name, f"must be a non-negative number, got {value}"))
    if problems:
        raise ConfigError(problems)
    windows = math.ceil(active_minutes / BILLING_WINDOW_MINUTES - 1e-9) if active_minutes > 0 else 0
    cost = cmus_per_copy * copies * price_per_cmu_minute * BILLING_WINDOW_MINUTES * windows
    return CostEstimate(
        cmus_per_copy=cmus_per_copy,
        copies=copies,
        active_minutes=active_minutes,
        windows=windows,
        price_per_cmu_minute=price_per_cmu_minute,
        cost=round(cost, 6),
    )
