"""A deterministic confirmation gate for tools that change data (bookings, payments).

A dialogue provider that cannot vouch for its own confirmation step (any real LLM) does not
get to run a mutating tool on its say-so: the call loop holds the call, reads its details back
to the caller and runs it only after a clear yes on the next turn. The decision is code, not a
prompt, so a model that skips the question cannot book anything.

In the message history the held call is answered at once (OpenAI's convention needs a tool
message right after the assistant's tool call) with `awaiting_caller_confirmation`; after the
caller's answer the gate adds the real call and its result, so the model sees what happened.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from cells.dialogue.answers import yes_no
from cells.dialogue.saying import say_date, say_time
from cells.dialogue.spoken import tokenize
from cells.providers.base import Message, ToolCall

MAX_UNCLEAR = 2  # unclear answers before the held call is dropped


def _spoken(value: Any) -> str:
    """An argument as the caller should hear it: '2026-03-05T11:00' as 'Thursday, March 5th at 11 a.m.',
    '11:00' as '11 a.m.'."""
    text = str(value)
    try:
        if len(text) == 10:
            return say_date(date.fromisoformat(text))
        if len(text) == 5 and text[2] == ":":  # "11:00"
            return say_time(time.fromisoformat(text))
        if len(text) >= 16 and text[10] == "T":
            at = datetime.fromisoformat(text)
            return f"{say_date(at.date())} at {say_time(at.time())}"
    except ValueError:
        pass
    return text


def describe(call: ToolCall) -> str:
    """A spoken read-back of a tool call: its name and arguments in plain words."""
    action = call.name.replace("_", " ")
    details = ", ".join(f"{k.replace('_', ' ')} {_spoken(v)}" for k, v in call.arguments.items()
                        if v not in (None, ""))
    said = f"Just to confirm: {action}" + (f", {details}" if details else "")
    return said + ("" if said.endswith(".") else ".") + " Shall I go ahead?"  # "11 a.m." ends a sentence


@dataclass
class Held:
    call: ToolCall
    readback: str
    unclear: int = 0


class ConfirmationGate:
    def __init__(self) -> None:
        self.held: Held | None = None
        self._ids = itertools.count(1)

    def hold(self, call: ToolCall) -> tuple[dict[str, Any], str]:
        """Holds a mutating call; returns the tool result to record now and the text to say."""
        self.held = Held(call, describe(call))
        result = {"ok": False, "status": "awaiting_caller_confirmation", "readback": self.held.readback}
        return result, self.held.readback

    async def resolve(self, caller_text: str, history: list[Message],
                      run: Callable[[ToolCall], Awaitable[dict[str, Any]]]) -> str | None:
        """Handles the caller's answer to a read-back. Returns text to say instead of a dialogue
        reply (an unclear answer gets the question again), or None when the dialogue goes on."""
        held = self.held
        if held is None:
            return None
        answer = yes_no(tokenize(caller_text))
        if answer is None and held.unclear < MAX_UNCLEAR:
            held.unclear += 1
            return "Sorry, I need a yes or a no. " + held.readback
        self.held = None
        call = ToolCall(f"confirmed-{next(self._ids)}", held.call.name, held.call.arguments)
        history.append(Message("assistant", "", tool_calls=(call,)))
        if answer == "yes":
            result = await run(call)
        else:
            result = {"ok": False, "status": "caller_declined" if answer == "no" else "no_clear_answer"}
        history.append(Message("tool", json.dumps(result), tool_call_id=call.id))
        return None
