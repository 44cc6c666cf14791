"""Checks on what a language model is about to say: other people's data, off-limits topics, length.

A model can repeat a phone number, name or booking reference it saw somewhere other than this call
(another caller's, or one it made up). A sentence may name only data this call holds: the caller's own
words, the tool calls and results of this call, the agent's instructions and the knowledge passages the
brain answered from. Names are checked as two capitalised words in a row (a first and a last name)
that are not days, months or common words; phone numbers as runs of seven or more digits; booking
references as letters followed by digits ("BK-1042").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")
_REFERENCE = re.compile(r"\b[A-Z]{2,4}-?\d{2,}\b")
_NAME = re.compile(r"\b([A-Z][a-z]+(?:-[A-Z][a-z]+)?)\s+([A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b")
_COMMON = frozenset("""
monday tuesday wednesday thursday friday saturday sunday january february march april may june july
august september october november december i i'm i'll i've the a an this that thank thanks you your yes
no okay ok sure please hello hi good great dr mr mrs ms miss doctor street road avenue lane clinic dental
hotel room suite double single twin front desk just shall would could can let we our my it is are
""".split())

# Off-limits topics for a business's phone agent: advice it is not qualified to give, and its own set-up.
DEFAULT_TOPICS: tuple[tuple[str, str], ...] = (
    ("medical advice", r"\b(?:you should|i'd recommend|i recommend|try) (?:take|taking|using) \w+|"
                       r"\b(?:dosage|diagnos\w+|prescri\w+)\b"),
    ("legal or financial advice", r"\b(?:lawsuit|legal advice|invest(?:ing|ment)? in|stocks?|crypto\w*)\b"),
    ("politics or religion", r"\b(?:elections?|vote for|democrats?|republicans?|politic\w*|religio\w*)\b"),
    ("the agent's set-up", r"\b(?:system prompt|my instructions|i was instructed|i was told to|my prompt)\b"),
)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@dataclass(frozen=True)
class OutputLimits:
    max_sentences: int = 4  # per reply; what comes after is not said
    topics: tuple[tuple[str, str], ...] = DEFAULT_TOPICS  # (name, regex) the agent does not talk about
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_sentences < 1:
            raise ValueError("max_sentences must be at least 1")
        compiled = tuple((n, re.compile(p, re.IGNORECASE)) for n, p in self.topics)
        object.__setattr__(self, "_compiled", compiled)

    def off_topic(self, sentence: str) -> str | None:
        """The name of the off-limits topic the sentence touches, or None."""
        return next((name for name, pattern in self._compiled if pattern.search(sentence)), None)


def foreign_data(sentence: str, own: Iterable[str]) -> str | None:
    """What in the sentence is not this call's data (a phone number, name or reference), or None.
    `own`: the texts of this call (caller turns, tool calls and results, instructions, knowledge)."""
    own_text = " ".join(own)
    own_lower = own_text.lower()
    own_digits = {_digits(m.group(0)) for m in _PHONE.finditer(own_text)} | {_digits(own_text)}
    for m in _PHONE.finditer(sentence):
        digits = _digits(m.group(0))
        if len(digits) >= 7 and not any(digits in d for d in own_digits):
            return f"phone number {m.group(0)!r}"
    for m in _REFERENCE.finditer(sentence):
        ref = m.group(0)
        if ref.lower() not in own_lower and ref.replace("-", "").lower() not in own_lower.replace("-", ""):
            return f"reference {ref!r}"
    for m in _NAME.finditer(sentence):
        first, last = m.group(1), m.group(2)
        if first.lower() in _COMMON or last.lower() in _COMMON:
            continue
        if f"{first} {last}".lower() not in own_lower:
            return f"name {first} {last!r}"
    return None


def call_texts(messages: Sequence[object]) -> list[str]:
    """This call's own texts from its message history: the instructions, the caller's turns, tool call
    arguments and results. The assistant's own earlier words are not evidence (they may be the leak)."""
    out: list[str] = []
    for m in messages:
        role = getattr(m, "role", "")
        if role in ("system", "user", "tool"):
            out.append(str(getattr(m, "content", "") or ""))
        for call in getattr(m, "tool_calls", ()) or ():
            out.extend(str(v) for v in call.arguments.values())
    return out
