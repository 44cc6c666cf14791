"""Typed slot values from a caller's words, by the neutral spoken-English parsers (cells.dialogue), and
how each value is passed to a tool and said back."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from cells.dialogue.answers import find_name, yes_no
from cells.dialogue.parsing import parse_date, parse_time
from cells.dialogue.saying import say_date, say_hhmm
from cells.dialogue.spoken import find_phone, parse_cardinal, say_digits, tokenize

# Slot type -> what the recogniser is told to expect (cells.providers.stt.context.HINTS).
HINTS = {"date": "date", "time": "time", "name": "name", "phone": "digits", "number": "digits",
         "yes_no": "yes_no"}


def _number(tokens: list[str]) -> int | None:
    for i, tok in enumerate(tokens):
        if tok.isdigit():
            return int(tok)
        found = parse_cardinal(tokens, i, max_value=9999)
        if found is not None:
            return found[0]
    return None


_THE_DAY = re.compile(r"\bthe (\d{1,2})\b(?!\s*(?:am|pm|a\.m|p\.m|o'?clock|:))", re.IGNORECASE)


def _day_of_month(text: str, today: date) -> date | None:
    """"On the 8" (a recogniser's rendering of "the eighth"): the next such day of a month, from today."""
    m = _THE_DAY.search(text)
    if not m or not 1 <= int(m.group(1)) <= 31:
        return None
    d = today
    for _ in range(62):
        if d.day == int(m.group(1)):
            return d
        d += timedelta(days=1)
    return None


def _with_stems(tokens: list[str]) -> set[str]:
    """The words and their bare forms: a recogniser writes "family suite" as "the family's weed" or "the
    families", and the option's own word must still be found."""
    out = set(tokens)
    for tok in tokens:
        if tok.endswith("ies") and len(tok) > 5:
            out.add(tok[:-3] + "y")
        for end in ("'s", "s'", "s"):
            if tok.endswith(end) and len(tok) > len(end) + 2:
                out.add(tok[: -len(end)])
    return out


def read_choice(options: Sequence[tuple[str, Sequence[str]]], text: str) -> str | None:
    """The one option the caller named: by its declared words, else by the words of its value that no
    other option shares ("the harbour one" -> "harbour double"); None when none or several match."""
    said = _with_stems(tokenize(text))
    own = [{t for w in words for t in tokenize(w)} if words else set(tokenize(value))
           for value, words in options]
    found = []
    for i, (value, words) in enumerate(options):
        names = own[i] if words else own[i] - set().union(*(o for j, o in enumerate(own) if j != i))
        if names & said or value.lower() in text.lower():
            found.append(value)
    return found[0] if len(found) == 1 else None


def read_slot(kind: str, text: str, today: date) -> Any | None:
    """The value of a slot of `kind` in what the caller said (JSON-ready), or None when it is not there.
    Dates are ISO days, times "HH:MM", phones digit strings, yes/no booleans."""
    tokens = tokenize(text)
    if kind == "date":
        day = parse_date(text, today, expecting=True) or _day_of_month(text, today)
        return day.isoformat() if day else None
    if kind == "time":
        at = parse_time(text, expecting=True)
        return at.at.strftime("%H:%M") if at and at.at else None
    if kind == "name":
        name = find_name(tokens, expecting=True)
        return " ".join(w.capitalize() for w in name.split()) if name else None
    if kind == "phone":
        found = find_phone(tokens)
        return found[0] if found else None
    if kind == "number":
        return _number(tokens)
    if kind == "yes_no":
        answer = yes_no(tokens)
        return None if answer is None else answer == "yes"
    if kind == "text":
        return text.strip() or None
    raise ValueError(f"unknown slot type {kind!r}")


def say_value(kind: str, value: Any) -> str:
    """A slot's value as the agent says it back ('Thursday, March 5th', '11 a.m.')."""
    if kind == "date":
        return say_date(str(value))
    if kind == "time":
        return say_hhmm(str(value))
    if kind == "phone":
        return say_digits(str(value))
    if kind == "yes_no":
        return "yes" if value else "no"
    return str(value)
