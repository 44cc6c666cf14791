"""Vocabulary-constrained decoding for word answers: when the agent expects a name, a yes or no, a day or a
time and the first text does not read as one, Whisper may write only that slot's words.

The words come from the agent's data and the dialogue's own readers, not from a list of phrases: a name
from the agent's declared names (its Domain), a yes/no from the words the dialogue reads answers from, a
day or a time from the parsers' weekdays, months, numbers and clock words. Every BPE piece of those words
(in lower, title and capitalised case, with and without a leading space) is allowed, with punctuation and,
for days and times, numerals; every other token is suppressed (CTranslate2's `suppress_tokens`).

A constrained decode is taken only when it reads as the slot (the same reader the dialogue uses; a name
only when every word of it is a declared name, since a forced decode of an unknown name comes out as
whichever declared name is nearest) and the caller's side decides whether it is about as likely as what
Whisper heard unconstrained (whisper_stt.py). Over eSpeak callers: "My name is Sarah Reed" -> "... Sarah
Green", "Bigger Clark" -> "Peter Clark", "And stored." -> "Sounds good." (python -m evals.calls.turns:
18 -> 20 of 35 turns right on the first set of unscripted callers, 25 -> 25 of 41 on the second).

Off by default (WhisperStt `hold_words`): on real human speech it invents answers. The 423 short
speech-dev recordings decoded under each hint as if the agent had asked for that slot: "Nine." became
"No, no." or "Yes.", "Off." became "Half past ten.", "Marvin." (a name the agent does not know) became
"Martin."; with the hint on every recording WER went 18.2 % -> 23.6 % (yes_no) and 13.4 % -> 19.8 %
(time). No likelihood margin separated those from the eSpeak gains (at "at least 0.2 more likely than
the first": still 20 invented yes/no answers and 9 times). A false "yes" at a read-back would book.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Protocol

from cells.dialogue.answers import ANSWER_WORDS, find_name, yes_no
from cells.dialogue.parsing import MONTHS, parse_date, parse_time
from cells.dialogue.saying import WEEKDAYS
from cells.dialogue.spoken import ORDINAL_UNITS, TENS, UNITS, tokenize
from cells.providers.stt.context import Domain

_NUMBERS = (*UNITS, *TENS, "hundred")
# Words around a time or a day: "at half past three in the afternoon", "next Tuesday the 4th".
_CLOCK = ("at", "in", "the", "half", "past", "quarter", "to", "o'clock", "am", "pm", "a.m.", "p.m.", "noon",
          "midday", "morning", "afternoon", "evening", "around", "about", "after", "before", "ish")
_DAY = ("on", "next", "this", "week", "of", "the", "tomorrow", "today", "day", "after",
        "st", "nd", "rd", "th")
_NAME_CARRIERS = ("my", "name", "is", "it's", "this", "i'm", "speaking", "yes", "and", "surname", "first")
_ANSWER_EXTRA = ("that's", "it", "i", "thank", "you", "thanks", "don't", "isn't", "can't", "won't", "is", "a",
                 "that", "we", "let's", "sounds", "ahead")
_PUNCT = re.compile(r"[ .,?!'\-]+")
_NUMERALS = re.compile(r"[ 0-9.,:?!'\-]+")


class _Tokenizer(Protocol):
    eot: int

    def decode(self, tokens: list[int]) -> str: ...

    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class VocabSlot:
    """One kind of word answer: the words it may be written with, whether numerals are allowed, and
    whether a text reads as it (`fits`: the first text needs no second decode)."""

    hint: str
    words: frozenset[str]
    numerals: bool
    reads: Callable[[str], bool]
    max_words: int | None = None  # a first text longer than this is something else: left as heard
    # How many words of the answer a text holds (a held text with fewer than the first loses some).
    size: Callable[[str], int] = lambda text: 0

    def fits(self, text: str) -> bool:
        too_long = self.max_words is not None and len(tokenize(text)) > self.max_words
        return too_long or self.reads(text)

    def takes(self, held: str, first: str) -> bool:
        """Whether a constrained text `held` is worth more than the `first` (likelihood aside)."""
        return self.reads(held) and self.size(held) >= self.size(first)


def _name_words(text: str) -> int:
    return len((find_name(tokenize(text), expecting=True) or "").split())


def _declared_name(text: str, declared: frozenset[str]) -> bool:
    name = find_name(tokenize(text), expecting=True)
    return bool(name) and all(w in declared for w in name.lower().split())


def vocab_slot(hint: str | None, domain: Domain | None,
               today: Callable[[], date] = date.today) -> VocabSlot | None:
    """The constraint for a turn with `hint`, or None (no constraint: an open turn, digits, a service)."""
    if hint == "name":
        declared = frozenset(w for n in (domain.names if domain else []) for w in n.lower().split())
        if not declared:
            return None  # no declared names: nothing to hold a name to
        # "Emma Worg" held to "Emma" would lose the surname: a held name needs as many words.
        return VocabSlot(hint, declared | frozenset(_NAME_CARRIERS), False,
                         lambda text: _declared_name(text, declared), size=_name_words)
    if hint == "yes_no":
        # A yes or a no is short; a longer turn ("actually, can we make it Thursday instead") held to
        # answer words came out as "can we can we can do it", a yes the caller never said.
        return VocabSlot(hint, ANSWER_WORDS | frozenset(_ANSWER_EXTRA), False,
                         lambda text: yes_no(tokenize(text)) is not None, max_words=3)
    if hint == "date":
        words = frozenset((*WEEKDAYS, *MONTHS, *_NUMBERS, *ORDINAL_UNITS, *_DAY, *_CLOCK))
        return VocabSlot(hint, words, True,
                         lambda text: parse_date(text, today(), expecting=True) is not None)
    if hint == "time":
        words = frozenset((*_NUMBERS, *_CLOCK, *WEEKDAYS))
        return VocabSlot(hint, words, True, lambda text: parse_time(text, expecting=True) is not None)
    return None


def _forms(word: str) -> Iterable[str]:
    for cased in {word, word.capitalize(), word.title(), word.upper() if len(word) <= 2 else word}:
        yield cased
        yield " " + cased


@cache
def _suppressed(tokenizer: _Tokenizer, words: frozenset[str], numerals: bool) -> tuple[int, ...]:
    allowed: set[int] = set()
    for word in words:
        for form in _forms(word):
            allowed.update(tokenizer.encode(form))
    plain = _NUMERALS if numerals else _PUNCT
    banned = [i for i in range(tokenizer.eot)
              if i not in allowed and not plain.fullmatch(tokenizer.decode([i]))]
    return (-1, *banned)  # -1: the model's own suppressed set


def vocab_suppress(tokenizer: _Tokenizer, slot: VocabSlot) -> list[int]:
    """Token ids to forbid so that only `slot`'s words (and punctuation, numerals if it allows them) are
    written. Computed once per tokenizer and vocabulary."""
    return list(_suppressed(tokenizer, slot.words, slot.numerals))
