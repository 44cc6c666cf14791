"""The one interface the call loop runs: a `CallAgent`.

A call needs, from whatever agent answers it: the greeting with its disclosure (`call.disclosure`),
a brain (turn in -> a streamed reply with tool calls, and `expectation(history)`: what it expects to
hear next), the tools it may use (`tools`), the vocabulary it declares to the recogniser (`domain`),
and whom to transfer to (`call.transfer_number`); end and transfer are the call-control tools
`end_call` and `transfer_to_human`, carried out by the call loop. A vertical (the clinic, a
data-defined flow) only fills these in through `assemble`; the call loop never knows which it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from cells.call.session import CallConfig, CallSession, Transport
from cells.call.turn_model import shared_detector
from cells.call.vad_model import shared_neural_vad
from cells.dialogue.chunker import SentenceChunker
from cells.providers import registry
from cells.providers.base import ToolSpec
from cells.providers.stt.context import Domain
from cells.tools.base import FunctionTool, ToolAdapter, ToolRegistry, TransferToHuman


class AgentTools:
    """The agent's tools as the call loop sees them. A mutating tool runs with `confirmed=True`
    only when the brain vouches for its own confirmation step (`LlmProvider.confirms_mutations`:
    a rule-based policy, or a wrapper of nothing else) or after the call loop's confirmation gate
    heard the caller's yes."""

    def __init__(self, registry_: ToolRegistry, confirms_mutations: bool) -> None:
        self.registry = registry_
        self.confirms_mutations = confirms_mutations

    def specs(self) -> Sequence[ToolSpec]:
        return self.registry.specs()

    def is_mutating(self, name: str) -> bool:
        return self.registry.is_mutating(name)

    def validate(self, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The error a tool would answer for these arguments, without running it (the call loop
        asks before reading a change back, so no one confirms what cannot run)."""
        return self.registry.validate(name, arguments)

    async def call(self, name: str, arguments: dict[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        return await self.registry.call(name, arguments, confirmed=confirmed)


def end_call_tool() -> ToolAdapter:
    """Listed so that the dialogue knows it may end the call; the call loop carries it out."""
    return FunctionTool("end_call", "End the call after saying goodbye.",
                        {"type": "object", "properties": {}, "required": []}, lambda: {"ok": True})


class CallAgent:
    """A running agent, shared by all of its calls; each call gets its own session.

    Subclasses (one per vertical) call `assemble` once with what they declare."""

    agent_id: str
    tenant_id: str
    record_calls: bool
    name: str  # how the agent names its business in a greeting without disclosure
    domain: Domain
    stt: Any
    brain: Any
    tts: Any
    tools: AgentTools
    call: CallConfig | None
    opening: str = ""  # said after the disclosure, whatever disclosure the record chooses

    def assemble(self, *, name: str, domain: Domain, tools: Sequence[ToolAdapter], greeting: str,
                 providers: registry.ProviderConfig, context: Mapping[str, Any],
                 transfer_number: str | None) -> None:
        """Builds the providers (each factory takes the context entries it names, plus `domain`) and
        the tool registry (the agent's own tools and the two call-control tools)."""
        self.name = name
        self.domain = domain
        context = {"domain": domain, **context}
        self.stt = registry.build("stt", providers, context=context)
        self.brain = registry.build("brain", providers, context=context)
        self.tts = registry.build("tts", providers, context=context)
        own = ToolRegistry([*tools, TransferToHuman(), end_call_tool()])
        self.tools = AgentTools(own, self.brain.confirms_mutations)
        self.call = self.call or CallConfig(disclosure=greeting, transfer_number=transfer_number)

    def plain_greeting(self) -> str:
        """The greeting for an agent whose compliance settings turn the AI disclosure off."""
        return f"Thank you for calling {self.name}. How can I help you today?"

    def expectation(self, history: Sequence[Any]) -> str | None:
        """What the brain expects to hear next (a recogniser hint), when it says."""
        expect = getattr(self.brain, "expectation", None)
        return expect(history) if expect is not None else None

    async def warm_up(self) -> None:
        warm = getattr(self.stt, "warm_up", None)
        if warm is not None:
            await warm()
        # A rule-based brain's sentence encoder loads here, once per process, not in a caller's first
        # turn; in a thread, as loading blocks for a few hundred milliseconds.
        think = getattr(self.brain, "warm_up", None)
        if think is not None:
            await asyncio.to_thread(think)
        # The end-of-turn model too: loading it blocks ~0.2 s, which in the first call's session would
        # stall every call's audio pacing on this worker.
        if self.call is not None and self.call.endpointing.use_model:
            await asyncio.to_thread(shared_detector)
        if self.call is not None and self.call.neural_vad:  # the Silero weights: parsed once, ~10 ms
            await asyncio.to_thread(shared_neural_vad)

    def new_session(self, transport: Transport, **kwargs: Any) -> CallSession:
        assert self.call is not None
        return CallSession(self.call, stt=self.stt, llm=self.brain, tts=self.tts, tools=self.tools,
                           chunker_factory=SentenceChunker, transport=transport, **kwargs)
