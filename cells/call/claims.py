"""Outcome claims in an agent's reply, checked against what the tools actually did.

A language model may say "You're booked for Tuesday" after its booking tool failed, or before it ran.
A sentence that claims an outcome (booked, reserved, cancelled, moved, sent, confirmed) is spoken only
when the history holds a successful result of a matching tool; otherwise the call loop says an honest
line instead. Questions ("Shall I book it?") and denials ("I couldn't book that") claim nothing, and a
sentence that restates a passage of the agent's knowledge the brain answered from ("records are sent
to your new dentist within 10 days") states the business's fact, not an outcome of the call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from cells.knowledge.lexical import tokens
from cells.providers.base import Message

GROUNDED_SHARE = 0.75

# Outcome words, and the tool-name fragments whose success backs each outcome.
_WORDS = {"booked": "booked", "reserved": "booked", "scheduled": "booked", "cancelled": "cancelled",
          "canceled": "cancelled", "moved": "moved", "rescheduled": "moved", "sent": "sent", "texted": "sent",
          "emailed": "sent", "confirmed": "confirmed"}
_BACKED_BY: dict[str, tuple[str, ...]] = {
    "booked": ("book", "reserv", "appointment", "schedul"), "cancelled": ("cancel",),
    "moved": ("move", "reschedul"), "sent": ("send", "sms", "text", "email", "message", "notify"),
    "confirmed": (),  # any change that succeeded backs "it's confirmed"
}
_OUTCOME = "|".join(_WORDS)
# A claim states the outcome as done, of the caller's business: "I've booked", "you're all booked",
# "it has been cancelled". "We're fully booked" and "that time is already booked" claim nothing.
_CLAIMS = (
    re.compile(rf"\b(?:i|i've|ive|i have|we've|weve|we have)\s+(?:just\s+|now\s+|gone ahead and\s+)?"
               rf"(?P<w>{_OUTCOME})\b"),
    re.compile(rf"\b(?:you're|youre|you are|you've been|youve been|it's|its|it is|that's|thats|that is|is|"
               rf"are|has been|have been|was|were|it's been|its been)\s+(?:now\s+|all\s+|been\s+|"
               rf"successfully\s+)*(?P<w>{_OUTCOME})\b"),
)
_PHRASES = {"all set": "booked", "see you on": "booked", "see you then": "booked", "got you down": "booked",
            "have you down": "booked", "put you down": "booked", "pencilled you in": "booked",
            "penciled you in": "booked", "booking was made": "booked", "booking has been made": "booked",
            "made the booking": "booked", "made your booking": "booked", "made a booking": "booked",
            "made your appointment": "booked", "is now on": "moved", "is now at": "moved"}
# "No problem, you're booked" still claims; "I couldn't book that" and "it isn't booked yet" do not.
_NEGATION = re.compile(r"\b(not|never|couldn'?t|can'?t|cannot|wasn'?t|isn'?t|haven'?t|hasn'?t|didn'?t|"
                       r"won'?t|aren'?t|unable|failed)\b", re.IGNORECASE)
HONEST: dict[str, str] = {
    "booked": "I couldn't complete that booking; shall I take a message or put you through?",
    "cancelled": "I couldn't complete that cancellation; shall I take a message or put you through?",
    "moved": "I couldn't move that booking; shall I take a message or put you through?",
    "sent": "I couldn't send that; shall I take a message or put you through?",
    "confirmed": "I couldn't complete that; shall I take a message or put you through?",
}


def claimed_outcomes(sentence: str) -> set[str]:
    """Outcomes a sentence states as done; none for a question or a sentence with a negation."""
    text = " ".join(sentence.lower().replace("\u2019", "'").split())
    if not text or text.endswith("?") or _NEGATION.search(text):
        return set()
    found = {_WORDS[m.group("w")] for pattern in _CLAIMS for m in pattern.finditer(text)}
    return found | {o for phrase, o in _PHRASES.items() if re.search(rf"\b{phrase}\b", text)}


def _succeeded(content: Any) -> bool:
    try:
        result = json.loads(content) if isinstance(content, str) else content
    except ValueError:
        return False
    return isinstance(result, dict) and result.get("ok") is True


def succeeded_tools(history: Sequence[Message]) -> list[str]:
    """Names of the tool calls in the history whose result came back ok."""
    names: dict[str, str] = {}
    out: list[str] = []
    for m in history:
        if m.role == "assistant":
            for call in m.tool_calls or ():
                names[call.id] = call.name
        elif m.role == "tool" and m.tool_call_id in names and _succeeded(m.content):
            out.append(names[m.tool_call_id])
    return out


def backed(outcome: str, tools: Sequence[str], is_mutating: Callable[[str], bool]) -> bool:
    fragments = _BACKED_BY[outcome]
    if not fragments:
        return any(is_mutating(t) for t in tools)
    return any(is_mutating(t) and any(f in t.lower() for f in fragments) for t in tools)


def _stems(text: str) -> set[str]:
    return {t[:5] for t in tokens(text)}


def grounded(sentence: str, passages: Sequence[str]) -> bool:
    """The sentence restates a knowledge passage: most of its words (GROUNDED_SHARE) are the passage's.
    "Missed appointments are charged a fee" restates the clinic's policy; "You're booked for Tuesday"
    restates no passage that says bookings are made within a week."""
    words = _stems(sentence)
    return bool(words) and any(len(words & _stems(p)) >= GROUNDED_SHARE * len(words) for p in passages)


def check_sentence(sentence: str, history: Sequence[Message], is_mutating: Callable[[str], bool],
                   grounding: Sequence[str] = ()) -> str | None:
    """None when the sentence may be spoken as it is; else the honest line to say instead. `grounding`:
    the knowledge passages the brain answered from (a sentence restating one is the business's fact, not
    a claim about the caller's request)."""
    claims = claimed_outcomes(sentence)
    if not claims or grounded(sentence, grounding):
        return None
    done = succeeded_tools(history)
    for outcome in sorted(claims):
        if not backed(outcome, done, is_mutating):
            return HONEST[outcome]
    return None


HONEST_LINES = frozenset(HONEST.values())


# --- facts: times, prices and dates a language model states --------------------------------------------
# A model asked as the clinic said Saturday hours were 12:00-18:00 (the clinic's are 9-1). A sentence that
# states a time, price or date is spoken only when that value is in what the brain was given (knowledge
# passages, tool calls and results, its instructions); a question states nothing.
UNKNOWN = "I don't know; shall I take a message or put you through?"
_MONTHS = {m: i + 1 for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july",
                                           "august", "september", "october", "november", "december"))}
_MONTHS |= {m[:3]: i for m, i in list(_MONTHS.items())}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_TIME = re.compile(r"\b(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ap>a\.?m\.?|p\.?m\.?|o'clock)(?!\w)|"
                   r"\b(?P<h2>\d{1,2}):(?P<m2>\d{2})\b|\b(?P<word>noon|midday|midnight)\b")
_ANY_TIME = re.compile(r"(?<![\d.])(?P<h>\d{1,2})(?::(?P<m>\d{2}))?(?![\d%])")
_PRICE = re.compile(r"[$£€₹]\s?(?P<a>\d[\d,]*(?:\.\d+)?)|(?P<b>\d[\d,]*(?:\.\d+)?)\s*"
                    r"(?:dollars?|bucks|pounds?|quid|euros?|rupees?|usd|gbp|eur|inr)\b")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_DATE = re.compile(rf"\b(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m1>{_MONTH})\b|"
                   rf"\b(?P<m2>{_MONTH})\.?\s+(?:the\s+)?(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b|"
                   r"\b(?P<y>\d{4})-(?P<m3>\d{2})-(?P<d3>\d{2})")


def _times(text: str) -> set[str]:
    """Clock times a sentence states, as HH:MM (24 h)."""
    out = set()
    for m in _TIME.finditer(text.lower()):
        if m.group("word"):
            out.add("00:00" if m.group("word") == "midnight" else "12:00")
            continue
        h, minutes = int(m.group("h") or m.group("h2")), int(m.group("m") or m.group("m2") or 0)
        ap = (m.group("ap") or "").replace(".", "")
        if ap == "pm" and h < 12:
            h += 12
        elif ap == "am" and h == 12:
            h = 0
        out.add(f"{h:02d}:{minutes:02d}")
    return out


def _source_times(text: str) -> set[str]:
    """Every time a source could mean: "9-1" holds 09:00, 21:00, 01:00 and 13:00."""
    out = _times(text)
    for m in _ANY_TIME.finditer(text):
        h, minutes = int(m.group("h")), int(m.group("m") or 0)
        if h <= 24 and minutes < 60:
            out |= {f"{h % 24:02d}:{minutes:02d}", f"{(h + 12) % 24:02d}:{minutes:02d}"}
    return out


def _amount(raw: str) -> float:
    return float(raw.replace(",", ""))


def _dates(text: str) -> set[tuple[int, int]]:
    out = set()
    for m in _DATE.finditer(text.lower()):
        if m.group("y"):
            out.add((int(m.group("m3")), int(m.group("d3"))))
        else:
            month, day = (m.group("m1"), m.group("d1")) if m.group("m1") else (m.group("m2"), m.group("d2"))
            out.add((_MONTHS[month.rstrip(".")], int(day)))
    return out


def unfounded_facts(sentence: str, sources: Sequence[str]) -> list[str]:
    """The times, prices and dates the sentence states that no source holds (empty: it may be said)."""
    if sentence.strip().endswith("?"):
        return []
    text = " ".join(sources)
    missing = [f"time {t}" for t in sorted(_times(sentence) - _source_times(text))]
    numbers = {_amount(n) for n in _NUMBER.findall(text)}
    for m in _PRICE.finditer(sentence.lower()):
        if _amount(m.group("a") or m.group("b")) not in numbers:
            missing.append(f"price {m.group(0).strip()}")
    missing += [f"date {mo}-{d}" for mo, d in sorted(_dates(sentence) - _dates(text))]
    return missing


HONEST_LINES = HONEST_LINES | {UNKNOWN}
