"""The demo tenant of each region in the embedded stack: a clinic with a reception agent and a number.

Idempotent: the ids and the owner token go to `<data>/demo.json` (mode 0600, this laptop's dev stack
only) on the first start and are reused while those tenants exist in the database.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.api.auth import bootstrap_tenant
from control.db.models import Agent, PhoneNumber, Tenant
from control.db.session import run_transaction
from control.db.tenancy import TenantScope

# Numbers from ranges set aside for drama and testing where the plan has one (Ofcom 020 7946 0xxx,
# NANP 555-01xx); the Indian number is an ordinary-looking Mumbai number on no real line here.
DEMO_NUMBERS = {"eu": "+442079460001", "in": "+912240000001", "us": "+12025550101"}
DEMO_NAMES = {"eu": "Demo Dental (London)", "in": "Demo Dental (Mumbai)", "us": "Demo Dental (Washington)"}


@dataclass(frozen=True)
class DemoTenant:
    region: str
    tenant_id: str
    agent_id: str
    number: str
    owner_token: str


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({r: asdict(d) for r, d in known.items()}, fh, indent=2)
    return known
