"""Slot-constrained decoding: when the agent expects digits (a phone number, a party size), Whisper may
only write digits.

Over the phone band tiny.en hears a read-out number as words half the time ("for it to nine" for "4 2
9"); forbidding every vocabulary token that is not made of digits, spaces and number punctuation leaves it
the digit it was nearest to. The list is the complement of the allowed tokens, computed once per
tokenizer and handed to CTranslate2's `suppress_tokens` with its default set (-1).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Protocol

# Text a token may decode to under each constraint. "digits": numerals, spaces, and the punctuation of a
# number read out ("0 7 9 4, 6 8 2." / "+44").
ALLOWED = {"digits": re.compile(r"[ 0-9.,+\-]+")}
CONSTRAINED_HINTS = tuple(ALLOWED)


class _Tokenizer(Protocol):
    eot: int

    def decode(self, tokens: list[int]) -> str: ...


@cache
def _suppressed(tokenizer: _Tokenizer, slot: str) -> tuple[int, ...]:
    allowed = ALLOWED[slot]
    banned = [i for i in range(tokenizer.eot) if not allowed.fullmatch(tokenizer.decode([i]))]
    return (-1, *banned)  # -1: the model's own suppressed set (symbols Whisper never writes)


def suppress_tokens(tokenizer: _Tokenizer, slot: str | None) -> list[int] | None:
    """Token ids to forbid when decoding a `slot` answer; None (no constraint) for other slots."""
    if slot not in ALLOWED:
        return None
    return list(_suppressed(tokenizer, slot))


# Words that may stand in a read-out number (the dialogue reads them as digits).
NUMBER_WORDS = frozenset("zero oh o one two three four five six seven eight nine double triple".split())


def fits_slot(text: str, slot: str | None) -> bool:
    """Whether `text` already is what a `slot` answer looks like (no second decode needed)."""
    if slot != "digits":
        return True
    words = re.findall(r"[a-z']+", text.lower())
    return all(w in NUMBER_WORDS for w in words) and bool(re.search(r"\d", text) or words)
