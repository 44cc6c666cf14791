"""Reading a call's message history: the agent's last question, and a saved history made safe to
continue from on another worker."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from cells.providers.base import Message

_SENTENCE = re.compile(r"[^.!?]+[.!?]+")


def last_question(history: Sequence[Message]) -> str:
    """The agent's last question (the last sentence of its last words that asks one), or its last
    words when they asked nothing."""
    for m in reversed(history):
        if m.role != "assistant" or not m.content.strip():
            continue
        sentences = [s.strip() for s in _SENTENCE.findall(m.content)] or [m.content.strip()]
        questions = [s for s in sentences if s.endswith("?")]
        return questions[-1] if questions else m.content.strip()
    return ""


def resumable_history(history: Sequence[Message]) -> list[Message]:
    """A saved history made consistent to continue from: every tool call gets an answer (a worker
    that died between a tool call and its result leaves it open; OpenAI-style APIs refuse that)."""
    out: list[Message] = []
    open_calls: list[str] = []
    for m in history:
        if m.role != "tool" and open_calls:
            out.extend(Message("tool", json.dumps({"ok": False, "status": "interrupted"}), tool_call_id=c)
                       for c in open_calls)
            open_calls = []
        out.append(m)
        if m.role == "assistant" and m.tool_calls:
            open_calls = [c.id for c in m.tool_calls]
        elif m.role == "tool" and m.tool_call_id in open_calls:
            open_calls.remove(m.tool_call_id)
    out.extend(Message("tool", json.dumps({"ok": False, "status": "interrupted"}), tool_call_id=c)
               for c in open_calls)
    return out
