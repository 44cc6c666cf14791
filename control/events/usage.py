"""The price table and the per-call usage arithmetic (per-minute prices, billed per second)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

CURRENCY: Final = "USD"

# Micro-dollars per minute of call time, by plan id. Integers keep the ledger exact.
PRICE_PER_MINUTE_MICROS: Final[Mapping[str, int]] = MappingProxyType({
    "free": 0,
    "starter": 90_000,  # $0.09 / min
    "growth": 70_000,  # $0.07 / min
    "scale": 50_000,  # $0.05 / min
    "enterprise": 40_000,  # $0.04 / min
})
# A plan missing from the table (a new plan created by an operator) is billed at the starter price
# rather than for free: under-billing silently is the worse failure.
DEFAULT_PLAN: Final = "starter"


def price_per_minute_micros(plan: str | None) -> int:
    return PRICE_PER_MINUTE_MICROS.get(plan or DEFAULT_PLAN, PRICE_PER_MINUTE_MICROS[DEFAULT_PLAN])


def billable_seconds(duration_s: float | int | None) -> int:
    """Call duration rounded up to whole seconds; missing, negative or non-finite durations are 0."""
    if duration_s is None or isinstance(duration_s, bool):
        return 0
    try:
        value = float(duration_s)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(value) or value <= 0:
        return 0
    return math.ceil(value)


def amount_micros(seconds: int, plan: str | None) -> int:
    """Per-second share of the per-minute price, rounded up to a whole micro-dollar."""
    if seconds <= 0:
        return 0
    return -(-seconds * price_per_minute_micros(plan) // 60)


__all__ = [
    "CURRENCY", "DEFAULT_PLAN", "PRICE_PER_MINUTE_MICROS", "amount_micros", "billable_seconds",
    "price_per_minute_micros",
]
