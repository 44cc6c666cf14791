"""The Reception demo agent: a dental clinic that answers questions and books, moves or cancels
appointments in an embedded calendar. Providers are built once per process from configuration
(the registry) and shared by all of the agent's calls; each call gets its own session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cells.call.session import CallConfig, CallSession, Transport
from cells.dialogue.chunker import SentenceChunker
from cells.dialogue.clinic import ClinicConfig, default_clinic, stt_vocabulary
from cells.providers import registry
from cells.providers.base import ToolSpec
from cells.providers.stt.domain_lm import Domain
from cells.tools.base import FunctionTool, ToolRegistry, TransferToHuman
from cells.tools.calendar import Calendar, CalendarTools


class AgentTools:
    """The agent's tools as the call loop sees them. A mutating tool runs with `confirmed=True`
    only when the dialogue provider vouches for its own confirmation step (a rule-based policy)
    or after the call loop's confirmation gate heard the caller's yes."""

    def __init__(self, registry_: ToolRegistry, confirms_mutations: bool) -> None:
        self.registry = registry_
        self.confirms_mutations = confirms_mutations

    def specs(self) -> Sequence[ToolSpec]:
        return self.registry.specs()

    def is_mutating(self, name: str) -> bool:
        return self.registry.is_mutating(name)

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

    def __post_init__(self) -> None:
        vocab = stt_vocabulary(self.clinic)
        domain = Domain(services=vocab["services"], names=vocab["names"], extra_phrases=vocab["phrases"])
        stt_name, _ = self.providers.resolve("stt")
        stt_extra = {"domain": domain} if stt_name == "pocketsphinx" else {}
        self.stt = registry.build("stt", self.providers, **stt_extra)
        llm_name, _ = self.providers.resolve("llm")
        extra = {"clinic": self.clinic, "clock": self.clock} if llm_name == "reception_policy" else {}
        self.llm = registry.build("llm", self.providers, **extra)
        self.tts = registry.build("tts", self.providers)
        path = self.data_dir / "calendar.json" if self.data_dir else None
        self.calendar = Calendar(self.clinic, self.clock, path=path)
        # transfer_to_human and end_call are carried out by the call loop; they are listed here so
        # that the dialogue knows it may use them.
        end_call = FunctionTool("end_call", "End the call after saying goodbye.",
                                {"type": "object", "properties": {}, "required": []}, lambda: {"ok": True})
        tools = ToolRegistry([*CalendarTools(self.calendar).adapters(), TransferToHuman(), end_call])
        self.tools = AgentTools(tools, bool(getattr(self.llm, "confirms_mutations", False)))
        self.call = self.call or CallConfig(
            disclosure=(f"Thank you for calling {self.clinic.name}. I'm an AI assistant, and this call "
                        "may be recorded. How can I help you today?"),
            transfer_number=self.transfer_number,
        )

    async def warm_up(self) -> None:
        warm = getattr(self.stt, "warm_up", None)
        if warm is not None:
            await warm()

    def new_session(self, transport: Transport, **kwargs: Any) -> CallSession:
        assert self.call is not None
        return CallSession(self.call, stt=self.stt, llm=self.llm, tts=self.tts, tools=self.tools,
                           chunker_factory=SentenceChunker, transport=transport, **kwargs)
