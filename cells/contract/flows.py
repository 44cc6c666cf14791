"""An agent's flows as data: the published shape, and the check that refuses a broken one.

The control plane validates a record's flows with `flow_problems` when the record arrives (a 422 that
names the problem), and the worker reads them with `read_flows`, so a call never meets an undefined
node or an undeclared tool. A flow is a state machine of nodes:

    {"start": "ask", "states": {
        "ask":  {"prompt": "Let's book your repair.",
                 "slots": [{"name": "day", "type": "date", "ask": "Which day suits you?"}],
                 "next": ["book"]},
        "book": {"prompt": "", "tool": "book_repair", "arguments": {"day": "day"},
                 "next": ["done"], "on_failure": "sorry", "on_decline": "ask"},
        "done": {"prompt": "You're booked for {day}. Goodbye.", "end": true},
        "sorry": {"prompt": "I couldn't book that; nothing has been booked.", "end": true}}}

A node says its prompt on entry ({slot} is replaced by the slot's spoken value), asks for each of its
slots in turn, then calls its tool (arguments: tool argument -> slot name) or moves on: to `when`'s
node for a yes/no slot's answer, else to `next[0]`. After its tool, `next[0]` on success, `on_failure`
when the tool failed and `on_decline` when the caller said no at the read-back. An `end` node hangs up
after its prompt, as does a node with nowhere to go. Only the call loop's confirmation gate reads a
mutating call back and runs it.

A `choice` slot takes one of its `options` (a string, or {"value": ..., "words": [...]} whose words name
it). A node may `assess` the answers so far when it is entered, by declared rules (cells.flows.scoring):
`{"points": [{"slot": s, "op": op, "value": v, "points": n}], "knock_out": [{"slot": s, "op": op,
"value": v, "reason": text}]}`, which fills the slots `score`, `knocked_out` and `reason` for its tool
and prompts. A `record` tool keeps its arguments in the tenant's store (cells.contract.records).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cells.contract.flow_rules import (
    ASSESSED,
    assess_problems,
    option_problems,
    read_options,
    record_tool_problems,
)

SLOT_TYPES = ("date", "time", "name", "phone", "number", "yes_no", "text", "choice")
TOOL_KINDS = ("http",)  # tool adapters a worker builds from a record (cells/tools/http.py)
TOOL_KINDS += ("record",)  # cells/tools/record.py: kept in the tenant's store
VENDOR_TOOL_KINDS = ("calcom", "greenhouse", "mews", "twilio_sms")  # cells/tools/vendors/
TOOL_KINDS += VENDOR_TOOL_KINDS
BUILT_IN_VERTICALS = ("reception",)  # verticals with an agent of their own (cells.agent.verticals)
CALL_CONTROL = ("transfer_to_human", "end_call")  # carried out by the call loop, never declared
MAIN_FLOW = "main"


@dataclass(frozen=True)
class SlotDef:
    name: str
    type: str
    ask: str  # the question that asks for it
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()  # a choice's (value, words naming it)


@dataclass(frozen=True)
class Node:
    name: str
    prompt: str = ""
    slots: tuple[SlotDef, ...] = ()
    tool: str | None = None
    arguments: Mapping[str, str] = field(default_factory=dict)  # tool argument -> slot name
    next: tuple[str, ...] = ()
    when: Mapping[str, str] = field(default_factory=dict)  # "yes"/"no" -> node
    on_failure: str | None = None
    on_decline: str | None = None
    end: bool = False
    assess: Mapping[str, Any] = field(default_factory=dict)  # scoring and knock-out rules


@dataclass(frozen=True)
class Flow:
    start: str
    nodes: Mapping[str, Node]

    def slot(self, name: str) -> SlotDef | None:
        return next((s for n in self.nodes.values() for s in n.slots if s.name == name), None)


class FlowError(ValueError):
    """A record's flows that cannot run; the message lists every problem."""


def _targets(state: Mapping[str, Any]) -> list[str]:
    out = [str(n) for n in state.get("next") or []]
    out += [str(n) for n in (state.get("when") or {}).values()]
    out += [str(state[k]) for k in ("on_failure", "on_decline") if state.get(k)]
    return out


def _node_problems(flow: str, node: str, state: Mapping[str, Any], states: Mapping[str, Any],
                   tools: Mapping[str, Mapping[str, Any]], slots: set[str]) -> list[str]:
    where = f"flow {flow!r} node {node!r}"
    problems = [f"{where} goes to undefined node {t!r}" for t in _targets(state) if t not in states]
    for slot in state.get("slots") or []:
        if slot.get("type") not in SLOT_TYPES:
            problems.append(f"{where} slot {slot.get('name')!r} has type {slot.get('type')!r}; "
                            f"expected one of {', '.join(SLOT_TYPES)}")
    tool = state.get("tool")
    if tool and tool not in tools and tool not in CALL_CONTROL:
        problems.append(f"{where} calls tool {tool!r}, which the agent does not declare")
    elif tool and tool not in CALL_CONTROL and tools[tool].get("kind") not in TOOL_KINDS:
        problems.append(f"{where} calls tool {tool!r}, whose kind is not one a worker runs "
                        f"({', '.join(TOOL_KINDS)})")
    if state.get("arguments") and not tool:
        problems.append(f"{where} has arguments but no tool")
    for arg, slot_name in (state.get("arguments") or {}).items():
        if slot_name not in slots:
            problems.append(f"{where} fills argument {arg!r} from slot {slot_name!r}, which no node asks for")
    if set(state.get("when") or {}) - {"yes", "no"}:
        problems.append(f"{where} has 'when' keys other than yes and no")
    if state.get("when") and not any(s.get("type") == "yes_no" for s in state.get("slots") or []):
        problems.append(f"{where} branches on 'when' without a yes_no slot")
    for slot in state.get("slots") or []:
        if slot.get("type") == "choice":
            problems += [f"{where} slot {slot.get('name')!r}: {p}"
                         for p in option_problems(slot.get("options"))]
    if state.get("assess") is not None:
        problems += [f"{where} assess: {p}" for p in assess_problems(state["assess"], slots)]
    if tool and tool in tools and tools[tool].get("kind") == "record":
        problems += [f"{where} tool {tool!r}: {p}" for p in record_tool_problems(tools[tool])]
    return problems


def flow_problems(flows: Mapping[str, Any], tools: Sequence[Mapping[str, Any]]) -> list[str]:
    """Everything that would strand a call in these flows (plain JSON, as the API receives them)."""
    declared = {str(t.get("name")): t for t in tools}
    problems: list[str] = []
    for name, flow in flows.items():
        states = flow.get("states") or {}
        if flow.get("start") not in states:
            problems.append(f"flow {name!r} starts at undefined node {flow.get('start')!r}")
        slots = {str(s.get("name")) for st in states.values() for s in st.get("slots") or []}
        if any(st.get("assess") for st in states.values()):
            slots |= set(ASSESSED)
        for node, state in states.items():
            problems += _node_problems(name, node, state, states, declared, slots)
    return problems


def agent_problems(vertical: str, flows: Mapping[str, Any], tools: Sequence[Mapping[str, Any]]) -> list[str]:
    """A record's flow problems, and a vertical that has neither a built-in agent nor flows."""
    problems = flow_problems(flows, tools)
    if not flows and vertical not in BUILT_IN_VERTICALS:
        problems.append(f"vertical {vertical!r} has no built-in agent ({', '.join(BUILT_IN_VERTICALS)}); "
                        "define its behaviour with flows")
    return problems


def _node(name: str, state: Mapping[str, Any]) -> Node:
    slots = tuple(SlotDef(str(s["name"]), str(s["type"]), str(s.get("ask") or ""),
                          read_options(s.get("options"))) for s in state.get("slots") or [])
    return Node(name=name, prompt=str(state.get("prompt") or ""), slots=slots, tool=state.get("tool") or None,
                arguments=dict(state.get("arguments") or {}), next=tuple(state.get("next") or ()),
                when=dict(state.get("when") or {}), on_failure=state.get("on_failure") or None,
                on_decline=state.get("on_decline") or None, end=bool(state.get("end")),
                assess=dict(state.get("assess") or {}))


def read_flows(flows: Mapping[str, Any], tools: Sequence[Mapping[str, Any]]) -> dict[str, Flow]:
    """The record's flows, checked; FlowError names every problem."""
    problems = flow_problems(flows, tools)
    if problems:
        raise FlowError("; ".join(problems))
    return {name: Flow(str(f["start"]), {n: _node(n, s) for n, s in f["states"].items()})
            for name, f in flows.items()}


def main_flow(flows: Mapping[str, Flow]) -> Flow:
    """The flow a call starts in: the one named "main", else the first."""
    if MAIN_FLOW in flows:
        return flows[MAIN_FLOW]
    return next(iter(flows.values()))
