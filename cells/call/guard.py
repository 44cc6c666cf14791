"""The call loop's guardrails, around whichever brain runs the call (rule-based policy, flow agent, LLM).

Input, before any brain: a caller turn that attacks the agent (prompt injection, jailbreak, asking for
its instructions, changes to everyone's records, other callers' data) or abuses it never reaches the
brain. The agent says a line of its own and stays on task; nothing changes: a change waiting for the
caller's yes is dropped, and no change may run in the turn after either (a "yes" there answers nothing
the caller asked for). After `max_flagged` such turns the call ends politely.

Output, for a language model (a brain that does not confirm its own changes; a rule-based brain says
only what its code and data produce): a sentence naming another caller's data, stating a time, price or
date that nothing the model was given holds, or touching an off-limits topic is replaced; a reply stops
after `max_sentences` sentences.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cells.call.claims import UNKNOWN, unfounded_facts
from cells.dialogue.guard_input import InputClassifier, Verdict
from cells.dialogue.guard_output import OutputLimits, call_texts, foreign_data
from cells.providers.base import Message, ToolCall

if TYPE_CHECKING:
    from cells.call.handoff import MessageHandoff
    from cells.call.reply import Reply

REFUSE = "I can't help with that, and nothing has been changed. What can I help you with?"
CIVIL = "I'm here to help, but please keep it civil. What can I help you with?"
GOODBYE = "I'm going to end this call now. Goodbye."
OFF_TOPIC = "I can't help with that on this call; shall I take a message or put you through?"


@dataclass
class CallGuard:
    """One call's guard (it counts the call's flagged turns): built per session."""

    classifier: InputClassifier = field(default_factory=lambda: _shared_classifier())
    limits: OutputLimits = field(default_factory=OutputLimits)
    max_flagged: int = 3
    flagged: int = 0
    _previous_flagged: bool = False
    _blocking: bool = False  # this turn may not run a change (it follows a flagged turn)
    handoff: MessageHandoff | None = None  # the next turn is a message for the staff (cells.call.handoff)

    # -- input ---------------------------------------------------------------------------------------
    async def screen(self, reply: Reply) -> bool:
        """Runs before the brain on a caller turn (the last message of the history). True when the
        guard answered the turn itself: the brain must not run."""
        history = reply.history
        self._blocking, self._previous_flagged = self._previous_flagged, False
        if not history or history[-1].role != "user":
            return False
        if self.handoff is not None:  # after an unanswered transfer: the caller's message
            handoff, self.handoff = self.handoff, None
            await handoff.take(reply)
            return True
        verdict: Verdict = await asyncio.to_thread(self.classifier.classify, history[-1].content)
        if not verdict.flagged:
            return False
        self._previous_flagged = True
        self.flagged += 1
        # The brain never reads it (the transcript event has it). An empty assistant message keeps the
        # turn's place, so a barge-in over the guard's line trims that line (the session's turn start).
        history[-1] = Message("assistant", "")
        dropped = self._drop_held(reply)
        reply.emit("input_guarded", {"kind": verdict.kind, "reason": verdict.reason,
                                     "dropped_change": dropped, "count": self.flagged})
        if self.flagged >= self.max_flagged:
            await reply._say_own(GOODBYE)
            await reply.on_control(ToolCall("guard", "end_call", {"reason": "guardrail"}))
            return True
        await reply._say_own(CIVIL if verdict.kind == "abuse" else REFUSE)
        return True

    def _drop_held(self, reply: Reply) -> str | None:
        """A change waiting for the caller's yes is dropped, with its answer in the history."""
        held = reply.gate.held
        if held is None:
            return None
        reply.gate.held = None
        call = ToolCall(f"guarded-{self.flagged}", held.call.name, held.call.arguments)
        reply.history.append(Message("assistant", "", tool_calls=(call,)))
        reply.history.append(Message("tool", json.dumps({"ok": False, "status": "dropped_by_guard"}),
                                     tool_call_id=call.id))
        return held.call.name

    def blocks(self, name: str, is_mutating: bool) -> dict[str, Any] | None:
        """The refusal of a change in a turn right after a flagged one, or None."""
        if is_mutating and self._blocking:
            return {"ok": False, "error": "not_allowed",
                    "message": f"{name} cannot run right after a turn the guard refused; ask again"}
        return None

    # -- output --------------------------------------------------------------------------------------
    def check_output(self, sentence: str, history: Sequence[Message], grounding: Sequence[str],
                     spoken: int) -> tuple[str | None, str]:
        """(what to say instead, or None to say it as is; why). `spoken`: sentences already said in this
        reply; past the limit the replacement is "" (say nothing)."""
        if spoken >= self.limits.max_sentences:
            return "", "too_long"
        topic = self.limits.off_topic(sentence)
        if topic is not None:
            return OFF_TOPIC, f"off_topic: {topic}"
        own = [*call_texts(history), *grounding]
        leak = foreign_data(sentence, own)
        if leak is not None:
            return UNKNOWN, f"foreign_data: {leak}"
        sources = [*grounding, *(t for m in history if m.role in ("system", "tool") for t in [m.content])]
        sources += [str(v) for m in history for c in m.tool_calls for v in c.arguments.values()]
        missing = unfounded_facts(sentence, sources)
        if missing:
            return UNKNOWN, "unfounded: " + ", ".join(missing)
        return None, ""


def is_language_model(brain: object) -> bool:
    """Whether a brain's words are its own invention (a language model), not lines from code and data.
    A brain may say so (`rule_based`); one that confirms its own changes is rule-based (the clinic's
    policy), and so is a flow brain (it has a `flow` and its `opening`, cells.flows.brain.FlowRules)."""
    declared = getattr(brain, "rule_based", None)
    if isinstance(declared, bool):
        return not declared
    if getattr(brain, "confirms_mutations", False) is True:
        return False
    return not (hasattr(brain, "flow") and callable(getattr(brain, "opening", None)))


_classifier: InputClassifier | None = None


def _shared_classifier() -> InputClassifier:
    """The process's classifier: the encoder and the examples' vectors are loaded once."""
    global _classifier
    if _classifier is None:
        _classifier = InputClassifier()
    return _classifier
