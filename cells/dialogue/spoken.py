"""Spoken-form English as a speech recogniser writes it: tokens, number words, phone numbers.

ASR text arrives lowercase, without punctuation, with numbers as words ("nine thirty",
"five five five two one"). Everything here works on a token list so that the date, time and
phone parsers can share positions and avoid claiming the same words twice.
"""

from __future__ import annotations

import re

UNITS = {
    "zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}
ORDINAL_UNITS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30,
}
# Words a recogniser often writes instead of a digit word when the caller says the number.
HOMOPHONES = {"won": "one", "to": "two", "too": "two", "for": "four", "fore": "four", "ate": "eight",
              "tree": "three", "sex": "six", "nein": "nine"}

# How Whisper tiny.en writes a digit it heard unclearly inside a spoken number ("it's time time time,
# 9 8 1 4" for "it's five five five, nine eight one four"; "side side side", "sign sign sign", "free
# free" for "three three" and "near" for "zero" in other eSpeak voices and rates). Real words too
# ("that's fine, 555...", "are you free"), so they count only in a row of two or more, or next to a
# digit inside a number.
DIGIT_ALIKES = {"time": 5, "fine": 5, "side": 5, "sign": 5, "free": 3, "near": 0, "nero": 0}
FIVE_ALIKES = frozenset(w for w, d in DIGIT_ALIKES.items() if d == 5)

_ORDINAL_DIGITS = re.compile(r"^(\d{1,2})(st|nd|rd|th)$")


def tokenize(text: str) -> list[str]:
    """Lowercase words; 'a.m.' -> 'am', "o'clock" -> 'oclock', '9:30' kept whole, apostrophes dropped."""
    t = text.lower()
    t = re.sub(r"\b([ap])\.\s?m\b\.?", r"\1m", t)
    t = re.sub(r"\bo'?\s?clock\b", "oclock", t)
    t = re.sub(r"\b(\w+) a clock\b", lambda m: m[1] + (" oclock" if is_number_word(m[1]) or m[1] == "free"
                                                      else " a clock"), t)  # Whisper's "three a clock"
    t = t.replace("'", "").replace("\u2019", "")
    t = re.sub(r"\b(\d{1,2})\.(\d\d)(?!\d)", r"\1:\2", t)  # "9.30" is a time ("555.0142" is not)
    t = re.sub(r"\b(\d{1,2}:\d\d)(am|pm)\b", r"\1 \2", t)  # "2:30pm"
    t = re.sub(r"[^a-z0-9:\s]", " ", t)
    tokens = t.split()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        # "a m" / "p m" from the recogniser become one token, only after a number ("i am" stays).
        after_number = bool(out) and is_number_word(out[-1])
        if tok in ("a", "p") and i + 1 < len(tokens) and tokens[i + 1] == "m" and after_number:
            out.append(tok + "m")
            i += 2
            continue
        if tok.endswith("ish") and is_number_word(tok[:-3]):  # "nineish", "9ish": "nine ish"
            out.extend([tok[:-3], "ish"])
            i += 1
            continue
        if re.fullmatch(r"\d{1,2}(am|pm)", tok):
            out.extend([tok[:-2], tok[-2:]])
        else:
            out.append(tok)
        i += 1
    return out


def is_number_word(tok: str) -> bool:
    return tok in UNITS or tok in TENS or tok.isdigit() or bool(re.fullmatch(r"\d{1,2}:\d\d", tok))


def parse_cardinal(tokens: list[str], i: int, max_value: int = 99) -> tuple[int, int] | None:
    """A cardinal 0..99 starting at tokens[i] ("twenty five", "7"); returns (value, next index)."""
    if i >= len(tokens):
        return None
    tok = tokens[i]
    if tok.isdigit() and len(tok) <= 2:
        value, j = int(tok), i + 1
    elif tok in TENS:
        value, j = TENS[tok], i + 1
        unit = tokens[j] if j < len(tokens) else ""
        if unit in UNITS and 1 <= UNITS[unit] <= 9 and unit not in ("o", "oh"):
            value += UNITS[tokens[j]]
            j += 1
    elif tok in UNITS and tok not in ("o", "oh"):
        value, j = UNITS[tok], i + 1
    else:
        return None
    return (value, j) if value <= max_value else None


def parse_ordinal(tokens: list[str], i: int) -> tuple[int, int] | None:
    """An ordinal day 1..31 at tokens[i]: 'fifth', 'twenty first', '5th'; returns (value, next index)."""
    if i >= len(tokens):
        return None
    tok = tokens[i]
    m = _ORDINAL_DIGITS.match(tok)
    if m:
        return int(m.group(1)), i + 1
    if tok in ORDINAL_UNITS:
        return ORDINAL_UNITS[tok], i + 1
    if tok in ("twenty", "thirty") and i + 1 < len(tokens) and tokens[i + 1] in ORDINAL_UNITS:
        unit = ORDINAL_UNITS[tokens[i + 1]]
        if 1 <= unit <= 9:
            return TENS[tok] + unit, i + 2
    return None


def _digit_of(tok: str) -> int | None:
    if tok not in ("to", "for"):  # too common as real words inside a spoken number
        tok = HOMOPHONES.get(tok, tok)
    if tok in UNITS and UNITS[tok] <= 9:
        return UNITS[tok]
    return None


def _digit_at(tokens: list[str], i: int, run: str) -> int | None:
    """A digit word at tokens[i]; 'to' and 'for' count only inside a run, before another digit."""
    tok = tokens[i]
    if tok in DIGIT_ALIKES:
        j = i
        while j < len(tokens) and tokens[j] in DIGIT_ALIKES:
            j += 1
        nxt = tokens[j] if j < len(tokens) else ""
        in_row = j - i >= 2 or (i > 0 and tokens[i - 1] in DIGIT_ALIKES)
        beside = [nxt, tokens[i - 1] if i > 0 else ""]  # "662 nero": a digit on either side
        digit_beside = any(_digit_of(t) is not None or t.isdigit() for t in beside)
        return DIGIT_ALIKES[tok] if in_row or (run and digit_beside) else None
    if tok in ("to", "for"):  # too common as real words: "five five five for one two" has a four
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if not run or (_digit_of(nxt) is None and not nxt.isdigit()):
            return None
        tok = HOMOPHONES[tok]
    return _digit_of(tok)


def find_phone(tokens: list[str], min_digits: int = 7) -> tuple[str, int, int] | None:
    """The longest run of digit-like words (digits, its token span start and end) if it is long enough.

    Handles 'five five five two one eight seven', 'oh', 'double five', '07700 900123', '555-0142'
    (tokenised as '555 0142'), 'five five five, zero one four two', and fillers inside the run.
    """
    best: tuple[str, int, int] = ("", 0, 0)
    run, run_start = "", 0
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        piece: str | None = None
        step = 1
        if tok in ("double", "triple") and i + 1 < n and _digit_of(tokens[i + 1]) is not None:
            piece = str(_digit_of(tokens[i + 1])) * (2 if tok == "double" else 3)
            step = 2
        elif tok.isdigit():
            piece = tok
        elif tok in TENS:
            value = TENS[tok]
            if i + 1 < n and (u := _digit_of(tokens[i + 1])) is not None and u > 0:
                value += u
                step = 2
            piece = str(value)
        elif tok == "hundred" and run:
            piece = "00"
            k = i + 1 + (1 if i + 1 < n and tokens[i + 1] == "and" else 0)
            rest = parse_cardinal(tokens, k)
            if rest is not None and (rest[0] >= 10 or k > i + 1):  # "five hundred and fifty five": 555
                piece, step = f"{rest[0]:02d}", rest[1] - i
        elif (d := _digit_at(tokens, i, run)) is not None:
            piece = str(d)
        elif tok in UNITS:  # ten .. nineteen said as a pair of digits
            piece = str(UNITS[tok])
        elif tok in ("dash", "and", "uh", "um", "then", "hyphen", "er", "erm") and run:
            i += 1
            continue
        if piece is None:
            if len(run) > len(best[0]):
                best = (run, run_start, i)
            run = ""
        else:
            if not run:
                run_start = i
            run += piece
        i += step
    if len(run) > len(best[0]):
        best = (run, run_start, n)
    if len(best[0]) < min_digits:
        return None
    end = best[2]
    while end > best[1] and not _is_digitish(tokens[end - 1]):
        end -= 1  # fillers after the last digit are no part of it
    return best[0], best[1], end


def _is_digitish(tok: str) -> bool:
    return tok.isdigit() or tok in UNITS or tok in TENS or tok in HOMOPHONES or tok in DIGIT_ALIKES


def parse_phone(text: str, min_digits: int = 7) -> str | None:
    """Digits of a spoken phone number, or None if no run of at least min_digits digits is there."""
    found = find_phone(tokenize(text), min_digits)
    return found[0] if found else None


def number_runs(tokens: list[str]) -> set[int]:
    """Positions of number words standing next to other number words ('five five five for one')."""
    def numeric(t: str) -> bool:
        return t.isdigit() or t in UNITS or t in TENS or t in ("for", "to", "double", "triple")

    out: set[int] = set()
    for i, tok in enumerate(tokens):
        if not numeric(tok) or tok in ("for", "to"):
            continue
        if (i and numeric(tokens[i - 1])) or (i + 1 < len(tokens) and numeric(tokens[i + 1])) or (
                tok.isdigit() and len(tok) >= 3):
            out.add(i)
            k = i - 1
            while k >= 0 and tokens[k] in ("for", "to") and k - 1 >= 0 and numeric(tokens[k - 1]):
                out.add(k)
                k -= 1
    return out


def is_bare_number(tokens: list[str], found: tuple[str, int, int]) -> bool:
    """Whether a run of seven or more digits, said without a cue, can only be a phone number: no clock
    or calendar word inside it or right after it ("555 0198", "five five five two one eight seven")."""
    digits, start, end = found
    if len(digits) < 7:
        return False
    inside = tokens[start:end + 1]
    return not any(t in _CLOCK_WORDS or ":" in t for t in inside)


_CLOCK_WORDS = {"am", "pm", "oclock", "past", "half", "quarter"}


def say_digits(digits: str) -> str:
    """Phone digits grouped for read-back: '5552187' -> '555 2187'."""
    if len(digits) == 7:
        return f"{digits[:3]} {digits[3:]}"
    if len(digits) == 10:
        return f"{digits[:3]} {digits[3:6]} {digits[6:]}"
    return " ".join(digits[i:i + 3] for i in range(0, len(digits), 3))
