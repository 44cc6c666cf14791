"""Word error rate: word-level Levenshtein distance over the reference length, on normalised text.

Normalisation makes formatting differences free: case, punctuation, "a.m." versus "a m", and digits
versus number words ("9:30" -> "nine thirty", "555" -> "five five five" for digit strings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
          "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0..9999 as spoken words, "one hundred five" style (no "and")."""
    if n < 10:
        return _ONES[n]
    if n < 20:
        return _TEENS[n - 10]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + ("" if rest == 0 else " " + number_words(rest))
    thousands, rest = divmod(n, 1000)
    return f"{number_words(thousands)} thousand" + ("" if rest == 0 else " " + number_words(rest))


def _digits(match: re.Match[str]) -> str:
    token = match.group(0)
    if ":" in token:  # clock time: 9:30 -> nine thirty, 9:05 -> nine oh five, 9:00 -> nine
        hour, minute = (int(part) for part in token.split(":"))
        spoken = "" if minute == 0 else ("oh " + _ONES[minute] if minute < 10 else number_words(minute))
        return f" {number_words(hour)} {spoken} "
    if len(token) >= 4 or token.startswith("0"):  # phone numbers and codes are read digit by digit
        return " " + " ".join(_ONES[int(d)] for d in token) + " "
    return f" {number_words(int(token))} "


def normalise(text: str) -> list[str]:
    text = text.lower()
    # "9am", "9 a.m.", "p.m." -> "a m" / "p m" (as the recogniser spells them); a bare "am" is the verb.
    text = re.sub(r"(\d)\s*([ap])\.?m\b\.?", r"\1 \2 m", text)
    text = re.sub(r"\b([ap])\.m\.", r"\1 m", text)
    text = re.sub(r"\bpm\b", "p m", text)
    text = re.sub(r"\d+:\d\d|\d+", _digits, text)
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text)


@dataclass(frozen=True)
class WerCounts:
    errors: int  # substitutions + deletions + insertions
    reference_words: int

    @property
    def wer(self) -> float:
        return self.errors / self.reference_words if self.reference_words else float(self.errors > 0)

    def __add__(self, other: WerCounts) -> WerCounts:
        return WerCounts(self.errors + other.errors, self.reference_words + other.reference_words)


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def wer_counts(reference: str, hypothesis: str) -> WerCounts:
    ref, hyp = normalise(reference), normalise(hypothesis)
    return WerCounts(edit_distance(ref, hyp), len(ref))


def wer(reference: str, hypothesis: str) -> float:
    return wer_counts(reference, hypothesis).wer
