"""ReceptionPolicy: the embedded default behind LlmProvider for the Reception demo.

This is a rule-based dialogue policy, not a language model: intent and slot parsing (intents.py,
parsing.py) feed a deterministic state machine (reception_steps.py). It speaks the same protocol
as a real LLM, so the call pipeline cannot tell them apart:

* `complete(messages, tools)` streams `TextDelta`s, one per sentence so TTS can start early, and
  at most one `ToolCall`, always last.
* The pipeline runs the tool and calls `complete` again with two more messages, OpenAI-style: an
  assistant message carrying `tool_calls` (and the text already spoken), then a `tool` message
  with `tool_call_id` and the JSON result. The policy continues from the result.

State: rebuilt on every call by replaying the history (user turns and tool results; assistant
text is ignored, so barge-in trimming does not matter). A call resumed on another worker therefore
continues from the messages alone; `state(messages)` exposes the rebuilt `DialogueState`.
Tool call ids are deterministic (`call_<n>`), so a replay reproduces the ids already recorded.

Reading by meaning (cells.agents.reception.semantic) backs the rules at open questions; the newest caller turn
is embedded in a worker thread before the replay, so the event loop (and the 20 ms audio pacing of
other calls) never waits for the encoder, and the replay finds every turn's reading in the cache.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cells.agents.reception.clinic import ClinicConfig, default_clinic
from cells.agents.reception.semantic import SemanticReader, pin_blas_to_one_thread, shared_reader
from cells.agents.reception.state import Action, Call, DialogueState, Say
from cells.agents.reception.steps import ReceptionSteps
from cells.contract.knowledge import KnowledgeSearch
from cells.dialogue.knowledge_answer import KnowledgeAnswers, Offers, replay_with_answers
from cells.providers.base import Grounding, Message, TextDelta, ToolCall, ToolSpec

# Messages and tools come as our dataclasses or as OpenAI-style dicts.
Messageish = Message | Mapping[str, Any]
Toolish = ToolSpec | Mapping[str, Any]
_DOUBLE_DOT = re.compile(r"\.\.(?=\s|$)")
# What the policy waits for -> a speech recogniser hint (cells.providers.stt.context.HINTS).
_EXPECTATION_HINTS = {"phone": "digits", "confirm": "yes_no", "anything_else": "yes_no", "date": "date",
                      "time": "time", "choose": "time", "name": "name", "service": "service"}
_CALENDAR_TOOLS = {"check_availability", "create_booking", "find_booking", "move_booking", "cancel_booking"}


def _field(m: Messageish, key: str) -> Any:
    return m.get(key) if isinstance(m, Mapping) else getattr(m, key, None)


def _tool_names(tools: Sequence[Toolish]) -> set[str]:
    names = set()
    for t in tools:
        if isinstance(t, Mapping):
            names.add(t.get("name") or t.get("function", {}).get("name"))
        else:
            names.add(t.name)
    return names


def _result(content: Any) -> dict[str, Any]:
    if isinstance(content, dict):
        return content
    try:
        value = json.loads(content or "{}")
    except (TypeError, ValueError):
        return {"ok": False, "error": "bad_result", "message": str(content)}
    return value if isinstance(value, dict) else {"ok": True, "value": value}


class ReceptionPolicy:
    """A rule-based dialogue policy (not a language model) for the Reception demo, as an LlmProvider.

    Mutating calendar tools are emitted only after the caller's explicit yes to a read-back; this gate
    is code, so a pipeline may run them with `ToolRegistry.call(..., confirmed=policy.confirms_mutations)`.
    """

    confirms_mutations = True

    def __init__(self, clinic: ClinicConfig | None = None, clock: Callable[[], datetime] = datetime.now,
                 *, ask_phone: bool = True, max_failures: int = 3,
                 reader: SemanticReader | bool | None = True,
                 knowledge: KnowledgeSearch | None = None) -> None:
        """`reader`: True (default) shares the process's embedding reader, False reads by rules only.
        `knowledge`: the agent's knowledge search (the registry's context); free questions go to it."""
        self.clinic = clinic or default_clinic()
        self.reader = shared_reader() if reader is True else (reader or None)
        if self.reader is not None:
            pin_blas_to_one_thread()  # here, as the policy is built on the main thread (semantic.py)
        self.steps = ReceptionSteps(self.clinic, clock, ask_phone=ask_phone, max_failures=max_failures,
                                    reader=self.reader)
        # The clinic transfers to its front desk; it has no message tool, so it offers no message.
        self.knowledge = KnowledgeAnswers(knowledge, offers=Offers(message=False)) if knowledge else None
        self.steps.knowledge = self.knowledge

    @classmethod
    def from_options(cls, **options: Any) -> ReceptionPolicy:
        """For the provider registry: options clinic (ClinicConfig), clock, ask_phone, max_failures,
        semantic (bool, default true: read intents by meaning too)."""
        return cls(options.get("clinic"), options.get("clock", datetime.now),
                   ask_phone=bool(options.get("ask_phone", True)),
                   max_failures=int(options.get("max_failures", 3)),
                   reader=bool(options.get("semantic", True)), knowledge=options.get("knowledge"))

    def warm_up(self) -> bool:
        """Loads the sentence encoder and the intent examples (blocking; the worker runs it in a thread
        before calls arrive), and the agent's in-memory knowledge if it has one. False when reading by
        rules only."""
        if self.knowledge is not None:
            self.knowledge.warm_up()
        return self.reader.warm_up() if self.reader is not None else False

    async def complete(self, messages: Sequence[Messageish],
                       tools: Sequence[Toolish] = ()) -> AsyncIterator[TextDelta | ToolCall | Grounding]:
        last = next((m for m in reversed(messages) if _field(m, "role") == "user"), None)
        if self.reader is not None and last is not None:
            # Embedded off the event loop; the replay below reads it from the cache.
            await asyncio.to_thread(self.reader.read, str(_field(last, "content") or ""))
        _, actions, first_id = await replay_with_answers(self.knowledge, lambda: self._replay(messages))
        if self.knowledge is not None and last is not None:
            passages = self.knowledge.grounding(str(_field(last, "content") or ""))
            if passages:  # what a knowledge answer says is the business's fact (cells.call.claims)
                yield Grounding(passages)
        n = first_id
        sentences = 0
        for action in self._fit_to_tools(actions, tools):
            if isinstance(action, Say):
                text = _DOUBLE_DOT.sub(".", action.text)  # "at 2 p.m." ending a sentence
                yield TextDelta(text if sentences == 0 else " " + text)
                sentences += 1
            else:
                yield ToolCall(id=f"call_{n}", name=action.name, arguments=dict(action.arguments))
                n += 1

    def state(self, messages: Sequence[Messageish]) -> DialogueState:
        return self._replay(messages)[0]

    def expectation(self, messages: Sequence[Messageish]) -> str | None:
        """What the caller is expected to say next after `messages` ("digits" after asking for a phone
        number, "yes_no" after a read-back, ...), for the recogniser; None when anything goes."""
        return _EXPECTATION_HINTS.get(self.state(messages).expecting)

    def respond(self, messages: Sequence[Messageish],
                tools: Sequence[Toolish] = ()) -> list[Action]:
        """The same decision as `complete`, as plain actions (for tests and tracing)."""
        return self._fit_to_tools(self._replay(messages)[1], tools)

    # --- replay -------------------------------------------------------------------------------------

    def _replay(self, messages: Sequence[Messageish]) -> tuple[DialogueState, list[Action], int]:
        """Folds the history into a state; returns it, the not-yet-delivered actions, and the next call id."""
        s = DialogueState()
        pending: list[Action] = []
        outstanding: Call | None = None
        calls = 0
        spoke = False
        for m in messages:
            role = _field(m, "role")
            if role == "user":
                pending = self.steps.on_user(s, str(_field(m, "content") or ""))
            elif role == "tool" and outstanding is not None:
                pending = self.steps.on_tool_result(s, outstanding, _result(_field(m, "content")))
            elif role == "assistant":
                spoke = True
                pending = []  # whatever it said was delivered; a call it made stays outstanding
                continue
            else:
                continue
            outstanding = None
            for a in pending:
                if isinstance(a, Call):
                    outstanding = a
                    calls += 1
        if not spoke and not any(_field(m, "role") == "user" for m in messages):
            pending = self.steps.greeting(s)
        # Ids of calls in `pending` continue the numbering of those already replayed.
        return s, pending, calls - sum(isinstance(a, Call) for a in pending)

    def _fit_to_tools(self, actions: list[Action],
                      tools: Sequence[Toolish]) -> list[Action]:
        """Drops calls to tools the pipeline did not offer (no tools offered means all are)."""
        if not tools:
            return actions
        offered = _tool_names(tools)
        out: list[Action] = []
        for a in actions:
            if isinstance(a, Call) and a.name not in offered:
                if a.name in _CALENDAR_TOOLS:
                    out.append(Say("Sorry, I can't reach our calendar right now. Please call back later."))
                continue
            out.append(a)
        return out
