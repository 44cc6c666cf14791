"""The demo tenant of each region in the embedded stack: a clinic with a reception agent, a number and
the clinic's knowledge documents (queued here; the region's control plane embeds them when it starts),
and the data-defined agents of the other verticals (cells/agents/*/agent.json) with numbers of their own:
the hotel front desk (Stay) in eu, the warehouse job's phone screen (Recruit) in us.

Idempotent: the ids and the owner token go to `<data>/demo.json` (mode 0600, this laptop's dev stack
only) on the first start and are reused while those tenants exist in the database.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.contract.flows import agent_problems
from control.api.auth import bootstrap_tenant
from control.db.models import Agent, PhoneNumber, Tenant
from control.db.session import run_transaction
from control.db.tenancy import TenantScope
from control.knowledge import store

DEMO_KNOWLEDGE_DIR = Path(__file__).resolve().parent / "demo_knowledge"
_KNOWLEDGE_TYPES = {".md": "text/markdown", ".html": "text/html", ".csv": "text/csv"}

# Numbers from ranges set aside for drama and testing where the plan has one (Ofcom 020 7946 0xxx,
# NANP 555-01xx); the Indian number is an ordinary-looking Mumbai number on no real line here.
DEMO_NUMBERS = {"eu": "+442079460001", "in": "+912240000001", "us": "+12025550101"}
DEMO_NAMES = {"eu": "Demo Dental (London)", "in": "Demo Dental (Mumbai)", "us": "Demo Dental (Washington)"}
# The data-defined demo agents: vertical -> (region, number, knowledge files).
AGENTS_DIR = Path(__file__).resolve().parents[1] / "agents"
VERTICAL_AGENTS = {"stay": ("eu", "+442079460002", "hotel"), "recruit": ("us", "+12025550102", "job")}


@dataclass(frozen=True)
class DemoTenant:
    region: str
    tenant_id: str
    agent_id: str
    number: str
    owner_token: str
    # vertical -> {"agent_id", "number"}: every demo agent of the region, the clinic included
    agents: dict[str, dict[str, str]] = field(default_factory=dict)


async def _exists(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> bool:
    async with sessions() as session:
        return await session.scalar(select(Tenant.id).where(Tenant.id == uuid.UUID(tenant_id))) is not None


async def _create(sessions: async_sessionmaker[AsyncSession], region: str) -> DemoTenant:
    async def work(session: AsyncSession) -> DemoTenant:
        tenant, token = await bootstrap_tenant(session, DEMO_NAMES[region], region)
        scope = TenantScope(tenant.id, region)
        now = datetime.now(UTC)
        agent = scope.new(Agent, id=uuid.uuid4(), name="Reception", vertical="reception",
                          persona="Friendly clinic receptionist", voice={"provider": "espeak"},
                          providers={}, tools=[], flows={},
                          compliance={"ai_disclosure": True, "record_calls": True},
                          created_at=now, updated_at=now)
        session.add(agent)
        await session.flush()
        session.add(PhoneNumber(e164=DEMO_NUMBERS[region], region=region, tenant_id=tenant.id,
                                agent_id=agent.id))
        return DemoTenant(region, str(tenant.id), str(agent.id), DEMO_NUMBERS[region], token)

    return await run_transaction(sessions, work)


async def seed_demo(sessions: async_sessionmaker[AsyncSession], path: Path,
                    regions: tuple[str, ...] = ("eu", "in", "us")) -> dict[str, DemoTenant]:
    known: dict[str, DemoTenant] = {}
    if path.is_file():
        for region, doc in json.loads(path.read_text()).items():
            if region in regions and await _exists(sessions, doc["tenant_id"]):
                known[region] = DemoTenant(**doc)
    for region in regions:
        if region not in known:
            known[region] = await _create(sessions, region)
        demo = known[region]
        scope = TenantScope(uuid.UUID(demo.tenant_id), region)
        await seed_knowledge(sessions, scope, uuid.UUID(demo.agent_id), "clinic")
        agents = {"reception": {"agent_id": demo.agent_id, "number": demo.number}}
        for vertical, (home, number, knowledge) in VERTICAL_AGENTS.items():
            if home == region:
                agent_id = await _vertical_agent(sessions, scope, vertical, number)
                await seed_knowledge(sessions, scope, agent_id, knowledge)
                agents[vertical] = {"agent_id": str(agent_id), "number": number}
        known[region] = DemoTenant(**{**asdict(demo), "agents": agents})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({r: asdict(d) for r, d in known.items()}, fh, indent=2)
    return known


def vertical_record(vertical: str) -> dict[str, object]:
    """A demo agent's record (cells/agents/<vertical>/agent.json), checked as the API checks one."""
    spec = json.loads((AGENTS_DIR / vertical / "agent.json").read_text())
    problems = agent_problems(spec["vertical"], spec["flows"], spec["tools"])
    if problems:
        raise ValueError(f"the demo {vertical} agent is broken: {'; '.join(problems)}")
    return dict(spec)


async def _vertical_agent(sessions: async_sessionmaker[AsyncSession], scope: TenantScope, vertical: str,
                          number: str) -> uuid.UUID:
    """The agent on `number` (created with the number the first time); idempotent across restarts."""
    spec = vertical_record(vertical)

    async def work(session: AsyncSession) -> uuid.UUID:
        line = await session.scalar(select(PhoneNumber).where(PhoneNumber.e164 == number))
        if line is not None and line.tenant_id == scope.tenant_id and line.agent_id is not None:
            return line.agent_id
        if line is not None:
            raise RuntimeError(f"the demo number {number} belongs to another tenant or no agent")
        now = datetime.now(UTC)
        agent = scope.new(Agent, id=uuid.uuid4(), name=str(spec["name"]), vertical=str(spec["vertical"]),
                          persona=str(spec.get("persona") or ""), voice={"provider": "espeak"}, providers={},
                          tools=spec["tools"], flows=spec["flows"], compliance=spec.get("compliance") or {},
                          created_at=now, updated_at=now)
        session.add(agent)
        await session.flush()
        session.add(PhoneNumber(e164=number, region=scope.region, tenant_id=scope.tenant_id,
                                agent_id=agent.id))
        return agent.id

    return await run_transaction(sessions, work)


def demo_knowledge_files(agent_kind: str) -> list[Path]:
    """The demo knowledge files of one demo agent: "clinic", "hotel" or "job"."""
    return sorted(p for p in DEMO_KNOWLEDGE_DIR.glob(f"{agent_kind}*") if p.suffix in _KNOWLEDGE_TYPES)


async def seed_knowledge(sessions: async_sessionmaker[AsyncSession], scope: TenantScope,
                         agent_id: uuid.UUID, agent_kind: str) -> None:
    """Queue the agent's demo knowledge files; idempotent (a document is known by its content hash)."""
    for path in demo_knowledge_files(agent_kind):
        upload = store.Upload(path.stem.replace("_", " ").title(), _KNOWLEDGE_TYPES[path.suffix],
                              path.read_bytes(), agent_id, f"demo:{path.name}")

        async def work(session: AsyncSession, upload: store.Upload = upload) -> None:
            await store.queue_document(session, scope, upload, max_documents=1000)

        await run_transaction(sessions, work, scope=scope)
