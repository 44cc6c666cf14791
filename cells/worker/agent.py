"""The Reception demo agent: a dental clinic that answers questions and books, moves or cancels
appointments in an embedded calendar. Providers are built once per process from configuration
(the registry) and shared by all of the agent's calls; each call gets its own session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cells.call.session import CallConfig, CallSession, Transport
from cells.call.turn_model import shared_detector
from cells.contract.knowledge import NatsKnowledgeSearch
from cells.dialogue.chunker import SentenceChunker
from cells.dialogue.clinic import ClinicConfig, default_clinic, stt_vocabulary
from cells.providers import registry
from cells.providers.base import ToolSpec
from cells.providers.stt.context import Domain
from cells.tools.base import FunctionTool, ToolRegistry, TransferToHuman
from cells.tools.calendar import Calendar, CalendarTools


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


@dataclass
class ReceptionAgent:
    agent_id: str = "reception-demo"
    tenant_id: str = "demo"
    clinic: ClinicConfig = field(default_factory=default_clinic)
    data_dir: Path | None = None
    providers: registry.ProviderConfig = field(default_factory=registry.ProviderConfig)
    clock: Callable[[], datetime] = datetime.now
    call: CallConfig | None = None
    transfer_number: str | None = None
    record_calls: bool = True  # the agent's compliance settings allow recording its calls
    # Where the demo calendar keeps its bookings (default: data_dir/calendar.json). A cell's workers
    # share one file per agent in the region's store, so any of them finds a caller's booking.
    calendar_path: Path | None = None
    knowledge: Any = None  # the agent's KnowledgeSearch (cells.contract.knowledge); its brain gets it

    def __post_init__(self) -> None:
        vocab = stt_vocabulary(self.clinic)
        domain = Domain(services=vocab["services"], names=vocab["names"], extra_phrases=vocab["phrases"])
        # The agent's own objects; each provider's factory takes those its signature names.
        context = {"domain": domain, "clinic": self.clinic, "clock": self.clock, "knowledge": self.knowledge}
        self.stt = registry.build("stt", self.providers, context=context)
        self.brain = registry.build("brain", self.providers, context=context)
        self.tts = registry.build("tts", self.providers, context=context)
        path = self.calendar_path or (self.data_dir / "calendar.json" if self.data_dir else None)
        self.calendar = Calendar(self.clinic, self.clock, path=path)
        # transfer_to_human and end_call are carried out by the call loop; they are listed here so
        # that the dialogue knows it may use them.
        end_call = FunctionTool("end_call", "End the call after saying goodbye.",
                                {"type": "object", "properties": {}, "required": []}, lambda: {"ok": True})
        tools = ToolRegistry([*CalendarTools(self.calendar).adapters(), TransferToHuman(), end_call])
        self.tools = AgentTools(tools, self.brain.confirms_mutations)
        self.call = self.call or CallConfig(
            disclosure=(f"Thank you for calling {self.clinic.name}. I'm an AI assistant, and this call "
                        "may be recorded. How can I help you today?"),
            transfer_number=self.transfer_number,
        )

    async def warm_up(self) -> None:
        warm = getattr(self.stt, "warm_up", None)
        if warm is not None:
            await warm()
        # The rule-based brain's sentence encoder and intent examples load here, once per process, not
        # in a caller's first turn; in a thread, as loading blocks for a few hundred milliseconds.
        think = getattr(self.brain, "warm_up", None)
        if think is not None:
            await asyncio.to_thread(think)
        # The end-of-turn model too: loading it blocks ~0.2 s, which in the first call's session would
        # stall every call's audio pacing on this worker.
        if self.call is not None and self.call.endpointing.use_model:
            await asyncio.to_thread(shared_detector)

    def new_session(self, transport: Transport, **kwargs: Any) -> CallSession:
        assert self.call is not None
        return CallSession(self.call, stt=self.stt, llm=self.brain, tts=self.tts, tools=self.tools,
                           chunker_factory=SentenceChunker, transport=transport, **kwargs)


def provider_layer(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's `providers` ({stt|llm|tts: {name, model?, options}}) as a registry config layer."""
    layer: dict[str, Any] = {}
    for kind in ("stt", "llm", "tts"):
        ref = spec.get(kind)
        if not isinstance(ref, Mapping) or not ref.get("name"):
            continue
        options = dict(ref.get("options") or {})
        if ref.get("model"):
            options["model"] = ref["model"]
        layer[kind] = {"provider": str(ref["name"]), "options": options}
    return layer


def agent_from_spec(spec: Mapping[str, Any], *, data_dir: Path | None,
                    providers: registry.ProviderConfig | None = None,
                    transfer_number: str | None = None, calendar_path: Path | None = None,
                    nc: Any = None, region: str = "") -> ReceptionAgent:
    """A Reception agent configured from the control plane's agent row (AgentOut as JSON): persona as
    the system prompt, the voice, and the compliance disclosure. `providers` (a worker profile such as
    the load tests' instant one) wins over the agent's own provider choice. A cell's worker passes its
    NATS connection (`nc`) and `region`: the agent then searches its tenant's knowledge over NATS."""
    agent_id = str(spec.get("id") or "")
    if not agent_id:
        raise ValueError("the agent spec has no id")
    config = providers or registry.ProviderConfig(tenant=provider_layer(spec.get("providers") or {}))
    agent = ReceptionAgent(agent_id=agent_id, tenant_id=str(spec.get("tenant_id") or ""),
                           data_dir=data_dir / "agents" / agent_id if data_dir else None,
                           providers=config, transfer_number=transfer_number, calendar_path=calendar_path,
                           knowledge=NatsKnowledgeSearch.for_agent(nc, region, spec))
    assert agent.call is not None
    voice = spec.get("voice") if isinstance(spec.get("voice"), Mapping) else {}
    compliance = spec.get("compliance") if isinstance(spec.get("compliance"), Mapping) else {}
    disclosure = agent.call.disclosure
    if compliance.get("disclosure_text"):
        disclosure = str(compliance["disclosure_text"])
    elif compliance.get("ai_disclosure") is False:
        disclosure = f"Thank you for calling {agent.clinic.name}. How can I help you today?"
    voice_id = str(voice["voice_id"]) if voice.get("voice_id") else agent.call.voice_id
    agent.call = replace(agent.call, disclosure=disclosure, voice_id=voice_id,
                         system_prompt=str(spec.get("persona") or ""))
    agent.record_calls = compliance.get("record_calls", True) is not False
    return agent
