"""Query-string parsing for the list routes: each bad value is a 422 naming `query.<name>`.

Values reach SQL only after these checks, so a NUL byte, an out-of-range date or a stray string is a
client error here and never a database error (a 500) later.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Final

from quart import request

from control.api.openapi import QueryParam
from control.api.problems import ApiProblem, not_found_problem, validation_problem

PAGE_DEFAULT: Final = 50
PAGE_MOST: Final = 100
MAX_OFFSET: Final = 1_000_000
_DIGITS: Final = re.compile(r"[0-9]{1,18}")
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def int_query(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit and int() also take fullwidth and other Unicode digits.
    if not _DIGITS.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise validation_problem([{"path": f"query.{name}", "message": f"an integer from {lo} to {hi}",
                                   "code": "int_range"}])
    return int(raw)


# The bounds a list route documents and the bounds it enforces come from one place.
def page_params(default: int = PAGE_DEFAULT, most: int = PAGE_MOST) -> tuple[QueryParam, QueryParam]:
    return (QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": most, "default": default}),
            QueryParam("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}))


def read_page(default: int = PAGE_DEFAULT, most: int = PAGE_MOST) -> tuple[int, int]:
    """(limit, offset) of the request, within the bounds `page_params` documents."""
    return int_query("limit", default, 1, most), int_query("offset", 0, 0, MAX_OFFSET)


PAGE: Final = page_params()


def not_found() -> ApiProblem:
    # One body for "missing" and "another tenant's": nothing tells the two apart.
    return not_found_problem()


def bad_query(name: str, message: str, code: str = "query") -> ApiProblem:
    return validation_problem([{"path": f"query.{name}", "message": message, "code": code}])


def choice_query(name: str, allowed: Iterable[str]) -> str | None:
    raw = request.args.get(name)
    options = tuple(allowed)
    if raw is None:
        return None
    if raw not in options:
        raise bad_query(name, f"one of {', '.join(options)}", "enum")
    return raw


def pattern_query(name: str, pattern: re.Pattern[str], message: str) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not pattern.fullmatch(raw):
        raise bad_query(name, message, "pattern")
    return raw


def uuid_query(name: str) -> uuid.UUID | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        if not raw.isascii():  # uuid.UUID reads fullwidth digits too
            raise ValueError(raw)
        return uuid.UUID(raw)
    except ValueError:
        raise bad_query(name, "a UUID", "uuid") from None


def datetime_query(name: str) -> datetime | None:
    """An ISO 8601 instant with a UTC offset (or Z), returned in UTC."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise ValueError("no offset")
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad_query(name, "an ISO 8601 date-time with a UTC offset, e.g. 2025-07-01T09:00:00Z",
                        "datetime") from None


def date_query(name: str, default: date) -> date:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_query(name, "a date as YYYY-MM-DD", "date") from None


DATETIME_SCHEMA: Final = {"type": "string", "format": "date-time"}
DATE_SCHEMA: Final = {"type": "string", "format": "date"}
UUID_SCHEMA: Final = {"type": "string", "format": "uuid"}
