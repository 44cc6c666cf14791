"""Hand-off to a person: the whisper summary the person hears first, and a message when no one answers.

A transfer bridges the caller with `<Dial><Number url=whisper>` (cells.telephony.twilio_rest): the
person who picks up hears `whisper_summary` (who is calling and what they want) before the bridge. When
no one answers (the Dial's action says no-answer, busy or failed), the voice webhook sends the caller
back to a worker with the stream parameter `after_transfer`; `prepare_after_transfer` makes that new
stream's session open with an apology and an offer to take a message, and the caller's next turn is
taken as the message by the `take_message` tool (a `message_taken` call event at least), confirmed to
the caller, and the call ends. The brain is not involved: this works the same under every brain.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cells.dialogue.answers import find_name
from cells.dialogue.spoken import tokenize
from cells.providers.base import Message, ToolCall
from cells.tools.base import TakeMessage, ToolRegistry

if TYPE_CHECKING:
    from cells.call.reply import Reply
    from cells.call.session import CallSession

NO_ANSWER_STATUSES = frozenset({"no-answer", "busy", "failed", "canceled"})
NO_ANSWER_TEXT = ("I'm sorry, no one was free to take your call. I can take a message: please tell me your "
                  "name and your message.")
NOT_TAKEN_TEXT = "I'm sorry, I couldn't take your message. Please call back later. Goodbye."
_ASKS_FOR_PERSON = re.compile(r"\b(?:person|human|someone|somebody|staff|operator|manager|front desk|"
                              r"reception(?:ist)?|transfer|put me through|speak (?:to|with)|"
                              r"talk (?:to|with))\b")
MAX_WHISPER_WORDS = 30
# Silence that ends a spoken message: callers leaving one pause between sentences ("This is Anna. Please
# call me back."), and the message is taken at the first end of turn; 1.5 s is still well under the
# silence a voicemail waits for.
MESSAGE_END_SILENCE_MS = 1500.0


def _words(text: str, limit: int) -> str:
    words = text.split()
    return " ".join(words[:limit]) + (" ..." if len(words) > limit else "")


def caller_name(history: Sequence[Message]) -> str | None:
    """The caller's name: from a tool call's `name` argument, else as the caller said it."""
    for m in reversed(history):
        for call in m.tool_calls or ():
            name = call.arguments.get("name") or call.arguments.get("caller_name")
            if isinstance(name, str) and name.strip():
                return name.strip()
    for m in history:
        if m.role == "user" and (name := find_name(tokenize(m.content))):
            return name.title()
    return None


def whisper_summary(history: Sequence[Message], caller_number: str = "") -> str:
    """What the person taking a transferred call hears first: who is calling and what they want (the
    caller's latest turn that is not just asking for a person)."""
    said = [m.content.strip() for m in history if m.role == "user" and m.content.strip()]
    wants = [t for t in said if not _ASKS_FOR_PERSON.search(t.lower())]
    name = caller_name(history)
    who = name or (f"a caller on {caller_number}" if caller_number else "a caller")
    what = f"They said: {_words(wants[-1], MAX_WHISPER_WORDS)}" if wants else "They asked for a person."
    return f"Call from {who}, transferred by the AI assistant. {what}"


def with_summary(call: ToolCall, history: Sequence[Message]) -> ToolCall:
    """A transfer_to_human call carrying the whisper summary for the carrier."""
    return ToolCall(call.id, call.name, {**call.arguments, "summary": whisper_summary(history)})


@dataclass
class MessageHandoff:
    """Takes the caller's next turn as a message for the staff (after an unanswered transfer)."""

    tool: TakeMessage
    caller_number: str = ""

    async def take(self, reply: Reply) -> None:
        text = reply.history[-1].content.strip()
        name = find_name(tokenize(text))
        args = {"name": name.title() if name else "", "number": self.caller_number, "message": text}
        call = ToolCall("message-1", self.tool.name, args)
        reply.history.append(Message("assistant", "", tool_calls=(call,)))
        reply.emit("tool_call", {"name": call.name, "arguments": args})
        try:
            result = await ToolRegistry([self.tool]).call(call.name, args)
        except Exception:  # a store that failed: the caller must not hear that it was taken
            result = {"ok": False, "error": "tool_failed"}
        reply.history.append(Message("tool", json.dumps(result), tool_call_id=call.id))
        reply.emit("tool_result", {"name": call.name, "result": result})
        await reply._say_own(confirmation(result) if result.get("ok") is True else NOT_TAKEN_TEXT)
        await reply.on_control(ToolCall("handoff", "end_call", {"reason": "message_taken"}))


def confirmation(result: Mapping[str, Any]) -> str:
    """The caller hears what was taken, from the tool's result (never from what they hoped it did)."""
    name = f", {result['name']}" if result.get("name") else ""
    back = f" on {result['number']}" if result.get("number") else ""
    return (f"Thank you{name}. I've taken your message: \"{_words(str(result['message']), 20)}\". "
            f"Someone will call you back{back}. Goodbye.")


def prepare_after_transfer(session: CallSession, parameters: Mapping[str, str],
                           store: Callable[[dict[str, str]], Any] | None = None) -> bool:
    """Before a stream's session starts: when the stream is the caller coming back from an unanswered
    transfer, the session opens with the offer to take a message and takes the next turn as one.
    `store`: where messages go besides the `message_taken` call event. True when it applies."""
    status = parameters.get("after_transfer", "")
    if status not in NO_ANSWER_STATUSES:
        return False

    def keep(record: dict[str, str]) -> Any:
        session.emit("message_taken", dict(record))
        return store(record) if store is not None else None

    session.config = dataclasses.replace(session.config, disclosure=NO_ANSWER_TEXT)
    session.guard.handoff = MessageHandoff(TakeMessage(keep), parameters.get("caller_number", ""))
    session.endpointer.floor_ms = MESSAGE_END_SILENCE_MS
    session.emit("transfer_unanswered", {"status": status})
    return True
