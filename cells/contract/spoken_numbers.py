"""Numbers in call text, the way callers say them and recognisers write them: digit groups ("4242",
"4,242", "4242-4242", "4242.4242"), spoken digits ("four two", "oh", "double four"), tens and teens
("forty-two", "twelve", "forty two hundred") and keypad strings ("4 2 * 4 #"). The redaction rules
(cells.contract.redaction) decide which of them are cards, codes or phone numbers.

A *run* is a number as one piece: units with only separators between them (spaces, dashes,
parentheses, commas, full stops, "uh"). A *chain* joins runs that a few other words stand between
("four two four two, you know, four two four two"): a card read with words in it is still one card.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = ["DIGIT_WORDS", "Unit", "chains", "runs"]

DIGIT_WORDS: Final = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "nil": "0", "one": "1", "two": "2", "three": "3",
    "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
_TEENS: Final = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15",
    "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}
_TENS: Final = {
    "twenty": "2", "thirty": "3", "forty": "4", "fourty": "4", "fifty": "5", "sixty": "6", "seventy": "7",
    "eighty": "8", "ninety": "9",
}
_REPEAT_WORDS: Final = {"double": 2, "triple": 3}
_ONES: Final = "|".join(w for w in DIGIT_WORDS if w not in ("zero", "oh", "o", "nought", "nil"))

# A digit group not glued to letters ("2pm", "CA1234567" and "abc-123" are not numbers here), with
# thousands commas ("4,242"); or a number word ("o'clock" is not zero).
_TOKEN: Final = re.compile(
    r"(?<!\w)(?<![A-Za-z][-/.])(?P<num>\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?!\w)(?![-/.][A-Za-z])"
    # A recogniser's stray letter before a digit group ("M8224", "O3" for "oh three"): the digits count.
    r"|(?<!\S)(?P<stray>[A-Za-z])(?P<glued>\d{3,}|(?<=[Oo])\d+)(?!\w)"
    rf"|\b(?P<tens>{'|'.join(_TENS)})(?:[\s-]+(?P<unit>{_ONES})\b(?!'))?\b"
    rf"|\b(?P<teen>{'|'.join(_TEENS)})\b"
    rf"|\b(?P<word>{'|'.join([*DIGIT_WORDS, *_REPEAT_WORDS])})\b(?!')"
    r"|\b(?P<hundred>hundred)\b",
    re.IGNORECASE,
)
# What may stand between two pieces of one number.
_FILLER: Final = r"\b(?:uh|um|umm|uhm|er|erm|ah|hmm|mm)\b"
_GAP: Final = re.compile(rf"(?:[\s\-\u2010-\u2015(),.;*#]|{_FILLER})*", re.IGNORECASE)
# What may stand between two runs of one chain: a few short words ("you know", "and then", "sorry").
_WORDS_GAP: Final = re.compile(r"[\s,.;:!?\-]*(?:[a-z']{1,8}[\s,.;:!?\-]+){1,3}", re.IGNORECASE)
# Identifiers are not numbers: a UUID's digit groups once read as a phone number.
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Unit:
    """One piece of a spoken or written number: its digits and where it stands in the text."""

    digits: str
    start: int
    end: int
    spoken: bool = False  # a number word ("forty-two"), not written digits


def _digits_of(m: re.Match[str]) -> str | None:
    if (num := m.group("num")) is not None:
        return "".join(str(int(ch)) for ch in num if ch != ",")  # any script's digits, as ASCII
    if (glued := m.group("glued")) is not None:
        return ("0" if m.group("stray") in "Oo" else "") + "".join(str(int(ch)) for ch in glued)
    if (tens := m.group("tens")) is not None:
        unit = m.group("unit")
        return _TENS[tens.lower()] + (DIGIT_WORDS[unit.lower()] if unit else "0")
    if (teen := m.group("teen")) is not None:
        return _TEENS[teen.lower()]
    return None


def runs(text: str) -> Iterator[list[Unit]]:
    """The numbers of `text`: runs of units with only separators between them."""
    run: list[Unit] = []
    repeat, repeat_start, prev_end = 1, -1, -1
    ids = [m.span() for m in _UUID.finditer(text)]
    for m in _TOKEN.finditer(text):
        if any(a <= m.start() < b for a, b in ids):
            if run:
                yield run
            run, repeat, prev_end = [], 1, -1
            continue
        if prev_end >= 0 and not _GAP.fullmatch(text, prev_end, m.start()):
            if run:
                yield run
            run, repeat = [], 1
        prev_end = m.end()
        if m.group("hundred") is not None:  # "forty two hundred" is 4200; "hundred" alone is no digit
            if run:
                last = run[-1]
                run[-1] = Unit(last.digits + "00", last.start, m.end(), True)
            continue
        digits = _digits_of(m)
        if digits is None:
            word = m.group("word").lower()
            if word in _REPEAT_WORDS:  # "double four" is 44
                repeat, repeat_start = _REPEAT_WORDS[word], m.start()
                continue
            digits = DIGIT_WORDS[word]
        start = m.start()
        if repeat > 1:
            digits, start, repeat = digits[0] * (repeat - 1) + digits, repeat_start, 1
        run.append(Unit(digits, start, m.end(), m.group("num") is None and m.group("glued") is None))
    if run:
        yield run


def chains(text: str, found: list[list[Unit]]) -> Iterator[list[list[Unit]]]:
    """The runs of `found` (in order) grouped where only a few short words stand between them."""
    chain: list[list[Unit]] = []
    for run in found:
        if chain and _WORDS_GAP.fullmatch(text, chain[-1][-1].end, run[0].start):
            chain.append(run)
            continue
        if chain:
            yield chain
        chain = [run]
    if chain:
        yield chain
