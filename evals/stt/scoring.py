"""Scores of one recognised utterance: word errors on normalised text (evals/stt/wer.py), and for
references made only of digits, the digit sequence."""

from __future__ import annotations

from evals.stt.wer import normalise

DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
               "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}


def reference_digits(text: str) -> str | None:
    """The digits of a reference made only of digit words ("nine", "five five"); None otherwise."""
    words = [w for w in text.lower().replace(",", " ").replace(".", " ").split()]
    if not words or any(w not in DIGIT_WORDS or w in ("o",) for w in words):
        return None
    return "".join(DIGIT_WORDS[w] for w in words)


def hypothesis_digits(text: str) -> str:
    """Digits a hypothesis says, numerals read digit by digit ("5-5" and "five five" are both "55")."""
    out = []
    for token in text.lower().replace("-", " ").split():
        token = token.strip(".,!?;:'\"")
        if token.isdigit():
            out.append(token)
        elif token in DIGIT_WORDS:
            out.append(DIGIT_WORDS[token])
    return "".join(out)


def words(text: str) -> list[str]:
    return normalise(text.replace("-", " "))
