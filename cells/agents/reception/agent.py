"""The Reception demo agent: a dental clinic that answers questions and books, moves or cancels
appointments in an embedded calendar. Providers are built once per process from configuration
(the registry) and shared by all of the agent's calls; each call gets its own session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cells.agent.runtime import CallAgent
from cells.agent.verticals import AgentEnv
from cells.agents.reception.calendar import Calendar, CalendarTools
from cells.agents.reception.clinic import CALLER_EXAMPLES, ClinicConfig, default_clinic, stt_vocabulary
from cells.call.session import CallConfig
from cells.providers import registry
from cells.providers.stt.context import Domain


@dataclass
class ReceptionAgent(CallAgent):
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
        domain = Domain(services=vocab["services"], names=vocab["names"], extra_phrases=vocab["phrases"],
                        templates=vocab["templates"], examples=dict(CALLER_EXAMPLES))
        path = self.calendar_path or (self.data_dir / "calendar.json" if self.data_dir else None)
        self.calendar = Calendar(self.clinic, self.clock, path=path)
        greeting = (f"Thank you for calling {self.clinic.name}. I'm an AI assistant, and this call "
                    "may be recorded. How can I help you today?")
        self.assemble(name=self.clinic.name, domain=domain, tools=CalendarTools(self.calendar).adapters(),
                      greeting=greeting, providers=self.providers,
                      context={"clinic": self.clinic, "clock": self.clock, "knowledge": self.knowledge},
                      transfer_number=self.transfer_number)

    @classmethod
    def from_record(cls, spec: Mapping[str, Any], env: AgentEnv) -> ReceptionAgent:
        """The clinic for an agent record of vertical "reception" (the record's common parts, such as
        its persona and disclosure, are applied by the seam)."""
        return cls(data_dir=env.data_dir, providers=env.providers or registry.ProviderConfig(),
                   clock=env.clock, transfer_number=env.transfer_number, calendar_path=env.store_path,
                   knowledge=env.knowledge)
