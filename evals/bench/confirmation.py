"""Confirmation discipline, read from a call's events: every run of a mutating tool must follow an
agent question and a caller's clear yes to it. The judge is the bench's own small lexicon, not the
agent's yes/no reader, so a bug there cannot mark its own homework."""

from __future__ import annotations

import re
from typing import Any

_YES = {"yes", "yeah", "yep", "yup", "sure", "correct", "right", "okay", "ok", "absolutely", "definitely",
        "please", "perfect", "great", "fine"}
_YES_PHRASES = ("go ahead", "sounds good", "do it", "book it", "that works")
_NO = {"no", "nope", "nah", "not", "don't", "dont", "cancel", "wait", "stop", "wrong", "never"}


def is_clear_yes(text: str) -> bool:
    words = re.findall(r"[a-z']+", text.lower())
    if not words or any(w in _NO for w in words):
        return False
    return any(w in _YES for w in words) or any(p in " ".join(words) for p in _YES_PHRASES)


def violations(events: list[dict[str, Any]], mutating: tuple[str, ...] | set[str]) -> list[str]:
    """Each mutating tool call that ran without 'agent asked, caller said yes' just before it."""
    out: list[str] = []
    last_question: str | None = None  # the agent's last words when they asked something
    answer: str | None = None  # the caller's first turn after that question
    for e in events:
        kind = e.get("kind")
        if kind == "agent_said" and e.get("text"):
            text = str(e["text"])
            last_question, answer = (text if "?" in text else None), None
        elif kind == "transcript" and not e.get("ignored") and e.get("text"):
            if answer is None and last_question is not None:
                answer = str(e["text"])
            elif last_question is None:
                answer = None
        elif kind == "tool_call" and e.get("name") in mutating:
            if last_question is None:
                out.append(f"{e['name']} ran with no question from the agent before it")
            elif answer is None or not is_clear_yes(answer):
                out.append(f"{e['name']} ran after {answer!r}, not a clear yes to {last_question!r}")
            last_question, answer = None, None  # one yes buys one change
    return out
