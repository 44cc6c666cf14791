"""Whisper's text prompt for a turn: the agent's vocabulary, and a style for the answer it expects.

Whisper continues the prompt as if it were the text just before the audio. Naming the agent's people and
a few things its callers say makes it spell them as the agent does and pick them over sound-alikes (the
clinic's "book a cleaning", not "look at leading"); a prompt full of digits makes it write a spoken number
as digits (single digits were recognised far more often with one). The prompt stays short: it costs
decode time, and a prompt of clipped fragments made Whisper stop after the first words of a longer answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cells.providers.stt.context import Domain

# Example answers in the register Whisper should continue, per hint (cells/providers/stt/context.HINTS).
HINT_PROMPTS = {
    "digits": "My number is 5 5 5, 0 1 2 3. It's 0 7 9 4, 6 8 2 3 1. 4. 9. 0.",
    "yes_no": "Yes, please. No, thank you. Yes, that's right.",
    # Numbers in a prompt get copied onto unclear audio ("at 11" for "at ten"), so each appears once.
    "date": "Monday at 9. Next Thursday at 4:30 in the afternoon. Friday the 12th.",
    "time": "At 9:30 in the morning. 2 in the afternoon. Half past ten.",
    "name": "My name is Sarah Johnson.",
    # An open question ("How can I help you today?"): a whole request with a day, a time and a name; an
    # agent declares its own (`Domain.examples`; the clinic's names a service), and one for "service".
    "": "Hi, could I come in on Monday at 10 in the morning? My name's Sarah Johnson.",
}
MAX_PROMPT_WORDS = 60
MAX_LISTED_SERVICES = 8  # a longer list is mostly synonyms, which make a poor prompt


def _sentence(text: str) -> str:
    """Configured phrases are often lower case; Whisper copies the prompt's casing."""
    text = re.sub(r"\bi\b", "I", text.strip())
    return text[:1].upper() + text[1:] if text else ""


def domain_prompt(domain: Domain | None) -> str:
    """A few sentences naming the agent's people and what its callers say, or "" without a domain."""
    if domain is None:
        return ""
    people = [n.strip().title() for n in domain.names if " " in n.strip()]  # full names: "doctor patel"
    parts = [", ".join(people) + "."] if people else []
    if 0 < len(domain.services) <= MAX_LISTED_SERVICES:
        parts.append(", ".join(_sentence(s) for s in domain.services) + ".")
    words = sum(len(p.split()) for p in parts)
    for phrase in domain.extra_phrases:
        n = len(phrase.split())
        if not n or words + n > MAX_PROMPT_WORDS:
            break
        parts.append(_sentence(phrase).rstrip(".?!") + ".")
        words += n
    return " ".join(parts)


def turn_prompt(domain_text: str, hint: str | None, examples: Mapping[str, str] | None = None) -> str | None:
    """The prompt for one turn: the domain sentences, then the expected answer's style (it sits nearest
    the audio, so it weighs most): the agent's own example for the hint (`examples`), else the neutral
    one."""
    key = hint or ""
    example = (examples or {}).get(key, HINT_PROMPTS.get(key, ""))
    parts = [p for p in (domain_text, example) if p]
    return " ".join(parts) or None
