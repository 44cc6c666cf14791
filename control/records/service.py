"""Storing and reading tool records, always in one tenant's scope.

A write is stored once per idempotency key (INSERT ... ON CONFLICT DO NOTHING, then the row read back),
for an agent of the same tenant only; the agent's row is locked while a write with a capacity counts
what is already held, so two calls cannot both take the last room. The call it came from is linked to
the platform's call row when the tenant has one with that carrier sid.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.contract.records import RecordRefused, RecordWrite, check_capacity, write_problems
from control.db.models import Agent, Call, ToolRecord
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select


def record_json(row: ToolRecord) -> dict[str, Any]:
    return {"id": str(row.id), "tenant_id": str(row.tenant_id), "agent_id": str(row.agent_id),
            "call_id": str(row.call_id) if row.call_id else None, "call_sid": row.call_sid, "tool": row.tool,
            "kind": row.kind, "arguments": row.arguments, "created_at": row.created_at.isoformat()}


def _uuid(value: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise RecordRefused("invalid_record", f"{what} is not a UUID") from None


async def _call_id(session: AsyncSession, scope: TenantScope, write: RecordWrite) -> uuid.UUID | None:
    stmt = scoped_select(Call, scope).where(Call.carrier_call_sid == write.call).with_only_columns(Call.id)
    found = await session.scalar(stmt.limit(1))
    if found is None and write.call_id:
        try:
            wanted = uuid.UUID(write.call_id)
        except ValueError:
            return None
        found = await session.scalar(scoped_select(Call, scope).where(Call.id == wanted)
                                     .with_only_columns(Call.id))
    return found


async def store(session: AsyncSession, scope: TenantScope, write: RecordWrite) -> tuple[dict[str, Any], bool]:
    """(the stored record, whether this write created it); RecordRefused for what is never stored."""
    problems = write_problems(write)
    if problems:
        raise RecordRefused("invalid_record", "; ".join(problems))
    agent_id = _uuid(write.agent_id, "agent_id")
    agent = await session.scalar(scoped_select(Agent, scope).where(Agent.id == agent_id).with_for_update())
    if agent is None:  # another tenant's agent, or none: the same answer
        raise RecordRefused("invalid_record", "no such agent")
    key = write.key

    async def existing() -> ToolRecord | None:
        return await session.scalar(scoped_select(ToolRecord, scope).where(ToolRecord.idempotency_key == key))

    found = await existing()
    if found is not None:
        return record_json(found), False
    if write.capacity is not None:
        held = await session.scalars(
            scoped_select(ToolRecord, scope)
            .where(ToolRecord.agent_id == agent_id, ToolRecord.tool == write.tool)
            .with_only_columns(ToolRecord.arguments))
        check_capacity(write.capacity, write.arguments, list(held))
    values = {"id": uuid.uuid4(), "tenant_id": scope.tenant_id, "region": scope.region, "agent_id": agent_id,
              "call_id": await _call_id(session, scope, write), "call_sid": write.call, "tool": write.tool,
              "kind": write.kind, "arguments": write.arguments, "idempotency_key": key}
    stmt = insert(ToolRecord).values(**values).on_conflict_do_nothing(
        index_elements=["region", "tenant_id", "idempotency_key"])
    created = (await session.execute(stmt)).rowcount == 1
    row = await existing()
    assert row is not None
    return record_json(row), created


class RecordService:
    def __init__(self, sessions: Callable[[], async_sessionmaker[AsyncSession]], region: str) -> None:
        self.sessions, self.region = sessions, region

    async def put(self, write: RecordWrite) -> tuple[dict[str, Any], bool]:
        scope = TenantScope(_uuid(write.tenant_id, "tenant_id"), self.region)
        return await run_transaction(self.sessions(), lambda s: store(s, scope, write), scope=scope)
