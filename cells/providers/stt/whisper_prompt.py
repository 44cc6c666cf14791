"""Whisper's text prompt for a turn: the agent's vocabulary, and a style for the answer it expects.

Whisper continues the prompt's register and spellings, so naming the services and people makes it spell
them as the agent does; a prompt full of digits makes it write a spoken number as digits (single digits
were recognised far more often with one). The prompt is short: it costs decode time, and a long one is
more likely to be echoed back on unclear audio.
"""

from __future__ import annotations

from cells.providers.stt.context import Domain

# Example answers in the register Whisper should continue, per hint (cells/providers/stt/context.HINTS).
HINT_PROMPTS = {
    "digits": "My number is 5 5 5, 0 1 2 3. It's 0 7 9 4, 6 8 2 3 1. 4. 9. 0.",
    "yes_no": "Yes. No. Yes, please. No, thank you. That's right.",
    "date": "Tuesday the 5th. Next Monday. March 3rd. Tomorrow.",
    "time": "At 9:30 a.m. Two p.m. Half past ten. The earliest you have.",
    "name": "My name is Sarah Johnson. It's Michael Brown.",
    "service": "A cleaning. A check-up. A filling.",
}
MAX_TERMS = 12  # vocabulary terms in the prompt


def domain_prompt(domain: Domain | None) -> str:
    """A short sentence naming the agent's services and people, or "" without a domain."""
    if domain is None:
        return ""
    terms: list[str] = []
    for term in [*domain.services, *domain.names]:
        term = term.strip()
        if term and term.lower() not in (t.lower() for t in terms):
            terms.append(term)
    return ", ".join(terms[:MAX_TERMS]) + "." if terms else ""


def turn_prompt(domain_text: str, hint: str | None) -> str | None:
    """The prompt for one turn: the domain sentence, then the expected answer's style (it sits nearest
    the audio, so it weighs most)."""
    parts = [p for p in (domain_text, HINT_PROMPTS.get(hint or "", "")) if p]
    return " ".join(parts) or None
