"""Typed reads of a call event's data: a wrong type rejects the event for good (it is terminated, not
retried), and what PostgreSQL's JSONB cannot store (NaN, NUL characters, lone surrogates) never
reaches it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

MAX_DEPTH: Final = 32
INT32_MAX: Final = 2**31 - 1


class EventRejected(ValueError):
    """The event can never be applied (unknown tenant, wrong region, unusable data).

    The message names the reason only, never the event's content, so it is safe to log.
    """


def clean(value: Any, depth: int) -> Any:
    """The payload as PostgreSQL can store it, or EventRejected: JSONB refuses NaN and NUL characters."""
    if depth > MAX_DEPTH:
        raise EventRejected("event data is nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        # A lone surrogate ("\ud800" in the JSON) cannot be encoded for the database.
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        raise EventRejected("event data holds a non-finite number")
    if isinstance(value, dict):
        return {clean(k, depth + 1): clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value]
    return value


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value)))


def string(data: Mapping[str, Any], key: str, max_len: int) -> str | None:
    """A string field, cut to max_len; None when absent, null or empty."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EventRejected(f"{key} must be a string")
    return value[:max_len]


def number(data: Mapping[str, Any], key: str) -> float | int | None:
    value = data.get(key)
    if value is None:
        return None
    if not is_number(value):
        raise EventRejected(f"{key} must be a number")
    return value  # type: ignore[no-any-return]


def integer(data: Mapping[str, Any], key: str, default: int) -> int:
    value = number(data, key)
    if value is None:
        return default
    return max(0, min(int(value), INT32_MAX))


def bigint(data: Mapping[str, Any], key: str) -> int:
    value = number(data, key)
    if value is None:
        return 0
    return max(0, min(int(value), 2**63 - 1))


def truth(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise EventRejected(f"{key} must be true or false")
    return value
