"""FlowRules: the embedded, deterministic brain that runs an agent record's flow (cells.contract.flows).

Not a language model: it asks for each node's typed slots, reads the answers with the neutral parsers
(cells/flows/slots.py), calls the node's tool with the slot values and moves along the flow's
transitions. It speaks the LlmProvider protocol, and says `confirms_mutations = False`: a mutating tool
call it emits is held by the call loop's confirmation gate, read back, and run only after the caller's
yes; the gate's answer comes back as the tool result, which decides the next node (done, declined,
failed). A failed tool is never followed by the node that says it was done.

State is rebuilt on every turn by replaying the history (user turns and tool results), like the
clinic's policy, so a call resumed on another worker continues from its messages alone.

With the agent's knowledge (its documents: the hotel's rooms and house rules, the job's pay and shifts),
a question asked instead of an answer ("can I bring my dog?" when asked for the arrival date) is
answered from the best passage, or honestly not known, and the same question is asked again; each
reply is fetched once and found again by every later replay (cells.dialogue.knowledge_answer).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cells.contract.flow_rules import assess
from cells.contract.flows import Flow, Node, SlotDef
from cells.contract.knowledge import KnowledgeSearch
from cells.dialogue.actions import Action, Call, Say
from cells.dialogue.knowledge_answer import UNAVAILABLE, KnowledgeAnswers, is_question, replay_with_answers
from cells.flows.slots import HINTS, read_choice, read_slot, say_value
from cells.providers.base import Grounding, Message, TextDelta, ToolCall, ToolSpec

MAX_UNCLEAR = 3  # unanswered questions in a row before the caller is put through to a person
_MAX_HOPS = 32  # transitions in one turn: a loop of slot-less nodes stops here
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_DECLINED = ("caller_declined", "no_clear_answer")




@dataclass
class FlowState:
    node: str
    slots: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # scalar fields of the last tool results
    asking: str | None = None  # the slot the agent asked for
    awaiting: bool = False  # a held tool call waits for the caller's yes at the call loop's gate
    unclear: int = 0
    ended: bool = False


def _field(m: Message | Mapping[str, Any], key: str) -> Any:
    return m.get(key) if isinstance(m, Mapping) else getattr(m, key, None)


def _result(content: Any) -> dict[str, Any]:
    try:
        value = json.loads(content or "{}") if not isinstance(content, dict) else content
    except (TypeError, ValueError):
        return {"ok": False, "error": "bad_result"}
    return value if isinstance(value, dict) else {"ok": False, "error": "bad_result"}


class FlowRules:
    """A rule-based brain for one flow, as an LlmProvider."""

    confirms_mutations = False  # the call loop's gate confirms every mutating call

    def __init__(self, flow: Flow, clock: Callable[[], datetime] = datetime.now,
                 knowledge: KnowledgeSearch | None = None) -> None:
        self.flow = flow
        self.clock = clock
        # Only the answer or the apology is said, no offer: the flow's question comes straight back.
        self.knowledge = KnowledgeAnswers(knowledge) if knowledge is not None else None

    def warm_up(self) -> None:
        """Loads an in-memory knowledge index now (blocking), so no caller's first question pays for it."""
        if self.knowledge is not None:
            self.knowledge.warm_up()

    # --- what the call loop calls -------------------------------------------------------------------

    def opening(self) -> str:
        """What the agent says after its disclosure: the start node's prompt and first question."""
        s = FlowState(self.flow.start)
        return " ".join(a.text for a in self._enter(s, self.flow.start) if isinstance(a, Say))

    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall | Grounding]:
        _, actions, first_id = await replay_with_answers(self.knowledge, lambda: self._replay(messages))
        last = next((m for m in reversed(messages) if _field(m, "role") == "user"), None)
        if self.knowledge is not None and last is not None:
            passages = self.knowledge.grounding(str(_field(last, "content") or ""))
            if passages:  # what a knowledge answer says is the business's fact (cells.call.claims)
                yield Grounding(passages)
        offered = {t.name for t in tools}
        n = first_id
        said = 0
        for action in actions:
            if isinstance(action, Call):
                if offered and action.name not in offered:
                    action = Say("Sorry, I can't do that right now.")
                else:
                    yield ToolCall(id=f"flow_{n}", name=action.name, arguments=dict(action.arguments))
                    n += 1
                    continue
            yield TextDelta(action.text if said == 0 else " " + action.text)
            said += 1

    def expectation(self, messages: Sequence[Message]) -> str | None:
        """What the caller should say next, as a recogniser hint."""
        s = self._replay(messages)[0]
        if s.awaiting:
            return "yes_no"
        slot = self.flow.slot(s.asking) if s.asking else None
        return HINTS.get(slot.type) if slot else None

    def state(self, messages: Sequence[Message]) -> FlowState:
        return self._replay(messages)[0]

    # --- replay -------------------------------------------------------------------------------------

    def _replay(self, messages: Sequence[Message]) -> tuple[FlowState, list[Action], int]:
        s = FlowState(self.flow.start)
        self._enter(s, self.flow.start)  # said in the greeting; sets the first question
        pending: list[Action] = []
        outstanding: str | None = None
        calls = 0
        for m in messages:
            role = _field(m, "role")
            if role == "assistant":
                pending = []  # delivered; a call it carried stays outstanding
                continue
            if role == "user":
                if s.awaiting or outstanding or s.ended:
                    continue  # the gate reads the answer to a read-back; the brain waits for the result
                pending = self._on_user(s, str(_field(m, "content") or ""))
            elif role == "tool" and outstanding is not None:
                result = _result(_field(m, "content"))
                if result.get("status") == "awaiting_caller_confirmation":
                    s.awaiting = True
                    pending = []
                    continue
                s.awaiting = False
                pending = self._on_result(s, outstanding, result)
            else:
                continue
            outstanding = None
            for a in pending:
                if isinstance(a, Call):
                    outstanding = a.name
                    calls += 1
        return s, pending, calls - sum(isinstance(a, Call) for a in pending)

    # --- steps --------------------------------------------------------------------------------------

    def _node(self, s: FlowState) -> Node:
        return self.flow.nodes[s.node]

    def _on_user(self, s: FlowState, text: str) -> list[Action]:
        node = self._node(s)
        if s.asking is not None:
            slot = self.flow.slot(s.asking)
            assert slot is not None
            value = self._read(slot, text)
            if value is None and self.knowledge is not None and is_question(text):
                reply = self.knowledge.lookup(text)  # fetched before this replay
                return [Say(reply.text if reply is not None else UNAVAILABLE), Say(slot.ask)]
            if value is None:
                s.unclear += 1
                if s.unclear >= MAX_UNCLEAR:
                    s.ended = True
                    return [Say("I'm sorry, I'm having trouble understanding. Let me put you through to "
                                "someone."), Call("transfer_to_human", {"reason": "not understood"})]
                return [Say(f"Sorry, I didn't catch that. {slot.ask}")]
            s.slots[slot.name] = value
            s.unclear = 0
            # Other typed slots of this node said in the same breath ("Thursday at eleven").
            for other in node.slots:
                if other.name not in s.slots and other.type in ("date", "time", "phone"):
                    found = read_slot(other.type, text, self.clock().date())
                    if found is not None:
                        s.slots[other.name] = found
        return self._proceed(s, node)

    def _read(self, slot: SlotDef, text: str) -> Any | None:
        if slot.type == "choice":
            return read_choice(slot.options, text)
        return read_slot(slot.type, text, self.clock().date())

    def _proceed(self, s: FlowState, node: Node, hops: int = 0) -> list[Action]:
        """Continues at `node`: its next missing slot, else its tool, else its transition."""
        missing = next((sl for sl in node.slots if sl.name not in s.slots), None)
        if missing is not None:
            s.asking = missing.name
            return [Say(missing.ask)]
        s.asking = None
        if node.end:
            s.ended = True
            return [Call("end_call", {})]
        if node.tool:
            return [Call(node.tool, {arg: s.slots.get(slot) for arg, slot in node.arguments.items()})]
        target = node.next[0] if node.next else None
        branch = next((sl for sl in node.slots if sl.type == "yes_no"), None)
        if node.when and branch is not None:
            target = node.when.get("yes" if s.slots.get(branch.name) else "no", target)
        if target is None or hops >= _MAX_HOPS:
            s.ended = True
            return [Say("Thank you for calling. Goodbye."), Call("end_call", {})]
        return self._enter(s, target, hops + 1)

    def _enter(self, s: FlowState, name: str, hops: int = 0) -> list[Action]:
        s.node = name
        node = self._node(s)
        if node.assess:  # the declared rules over the answers so far, for this node's tool and prompt
            s.slots.update(assess(node.assess, s.slots, self.clock().date()))
        said = [Say(self._fill(node.prompt, s))] if node.prompt.strip() else []
        return said + self._proceed(s, node, hops)

    def _on_result(self, s: FlowState, tool: str, result: dict[str, Any]) -> list[Action]:
        node = self._node(s)
        if tool != node.tool:  # call control (transfer, end): the call loop carries it out
            return []
        if result.get("ok") is True:
            s.results.update({k: v for k, v in result.items() if isinstance(v, str | int | float)})
            return self._enter(s, node.next[0]) if node.next else [Call("end_call", {})]
        if result.get("status") in _DECLINED:
            target = node.on_decline or self.flow.start
            for slot in self.flow.nodes[target].slots:  # asked again, not taken from the declined call
                s.slots.pop(slot.name, None)
            return [Say("All right, I haven't done that."), *self._enter(s, target)]
        if node.on_failure:
            return self._enter(s, node.on_failure)
        s.ended = True
        return [Say("I'm sorry, I couldn't complete that just now, and nothing has been done. Let me put "
                    "you through to someone."), Call("transfer_to_human", {"reason": f"{tool} failed"})]

    def _fill(self, text: str, s: FlowState) -> str:
        """A prompt with {slot} replaced by the slot's spoken value (or a tool result's field)."""
        def value(m: re.Match[str]) -> str:
            key = m.group(1)
            slot = self.flow.slot(key)
            if slot is not None and key in s.slots:
                return say_value(slot.type, s.slots[key])
            if key in s.slots:
                return str(s.slots[key])
            return str(s.results[key]) if key in s.results else m.group(0)
        return _PLACEHOLDER.sub(value, text)
