"""Which calls to delete: those past the tenant's retention, or every call with one caller's number.

A caller is the other party of a call: the `from` number of an inbound call, the `to` number of an
outbound one (the tenant's own number is on the other side and never selects anything). The number
is used to find the calls and is then forgotten: the certificate lists the calls, not the number.
Two things are left alone on purpose: consent records (evidence the tenant may have to keep) and
the tenant's own booking system (a tool's calendar, which holds no call id and is the tenant's
record, not the platform's). The platform's `tool_records` of a call go with it (control.retention.purge).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.db.models import Call, Recording, RetentionPolicy, Tenant
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select
from control.retention.purge import MAX_CALLS_PER_RUN, LiveStores, purge_calls

log = logging.getLogger(__name__)
E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
MAX_DAYS: Final = 36_500


@dataclass(frozen=True)
class Policy:
    call_days: int | None = None
    recording_days: int | None = None


def check_days(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
        raise ValueError(f"{name} must be null or a whole number of days from 1 to {MAX_DAYS}")
    return value


async def load_policy(session: AsyncSession, scope: TenantScope) -> Policy:
    row = await session.scalar(scoped_select(RetentionPolicy, scope))
    return Policy(row.call_days, row.recording_days) if row is not None else Policy()


async def save_policy(session: AsyncSession, scope: TenantScope, policy: Policy) -> Policy:
    row = await session.scalar(scoped_select(RetentionPolicy, scope).with_for_update())
    if row is None:
        row = scope.new(RetentionPolicy, id=uuid.uuid4())
        session.add(row)
    row.call_days, row.recording_days = policy.call_days, policy.recording_days
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return policy


async def _ids(sessions: async_sessionmaker[AsyncSession], scope: TenantScope, *where: Any,
               model: Any = Call, column: Any = Call.id) -> list[uuid.UUID]:
    async def read(session: AsyncSession) -> list[uuid.UUID]:
        stmt = (scoped_select(model, scope).where(*where).with_only_columns(column).distinct()
                .limit(MAX_CALLS_PER_RUN))
        return list(await session.scalars(stmt))

    return await run_transaction(sessions, read, scope=scope)


async def apply_retention(sessions: async_sessionmaker[AsyncSession], scope: TenantScope, stores: LiveStores,
                          *, now: datetime | None = None, actor: str = "system:retention"
                          ) -> list[dict[str, Any]]:
    """Delete what the tenant's policy says has expired; one certificate per batch that deleted any."""
    now = now or datetime.now(UTC)

    async def policy_of(session: AsyncSession) -> Policy:
        return await load_policy(session, scope)

    policy = await run_transaction(sessions, policy_of, scope=scope)
    certificates: list[dict[str, Any]] = []
    if policy.call_days is not None:
        cutoff = now - timedelta(days=policy.call_days)
        done: set[uuid.UUID] = set()
        # A batch that comes back again was not deleted (the certificate says where): stop, retry next run.
        while (ids := await _ids(sessions, scope, Call.started_at < cutoff)) and not done & set(ids):
            certificates.append(await purge_calls(
                sessions, scope, ids, stores, reason="retention", actor=actor,
                criteria={"call_days": policy.call_days, "started_before": cutoff.isoformat()}))
            done |= set(ids)
            if len(ids) < MAX_CALLS_PER_RUN:
                break
    if policy.recording_days is not None:
        cutoff = now - timedelta(days=policy.recording_days)
        done = set()
        while (ids := await _ids(sessions, scope, Recording.created_at < cutoff, model=Recording,
                                 column=Recording.call_id)) and not done & set(ids):
            certificates.append(await purge_calls(
                sessions, scope, ids, stores, reason="retention", actor=actor, recordings_before=cutoff,
                criteria={"recording_days": policy.recording_days, "recorded_before": cutoff.isoformat()}))
            done |= set(ids)
            if len(ids) < MAX_CALLS_PER_RUN:
                break
    return certificates


def check_number(number: Any) -> str:
    if not isinstance(number, str) or not E164.fullmatch(number):
        raise ValueError("phone_number must be an E.164 number such as +14155550100")
    return number


async def erase_caller(sessions: async_sessionmaker[AsyncSession], scope: TenantScope, stores: LiveStores,
                       number: str, *, actor: str) -> dict[str, Any]:
    """Delete every call of the tenant with this caller; one certificate (listing no call when none)."""
    number = check_number(number)
    caller = or_(and_(Call.direction == "inbound", Call.from_e164 == number),
                 and_(Call.direction == "outbound", Call.to_e164 == number))
    ids: list[uuid.UUID] = []
    while batch := await _ids(sessions, scope, caller, Call.id.not_in(ids) if ids else true()):
        ids += batch
        if len(batch) < MAX_CALLS_PER_RUN:
            break
    return await purge_calls(sessions, scope, ids, stores, reason="erasure", actor=actor,
                             criteria={"subject": "caller phone number", "calls_matched": len(ids)})


async def region_tenants(sessions: async_sessionmaker[AsyncSession], region: str) -> list[TenantScope]:
    """The region's tenants that have a retention policy."""
    async def read(session: AsyncSession) -> list[TenantScope]:
        rows = await session.execute(select(Tenant.id).where(Tenant.home_region == region))
        return [TenantScope(r.id, region) for r in rows]

    return await run_transaction(sessions, read)


async def apply_region(sessions: async_sessionmaker[AsyncSession], region: str, stores: LiveStores,
                       *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Apply every tenant's retention in `region`; a tenant that fails is logged and retried next run."""
    out: list[dict[str, Any]] = []
    for scope in await region_tenants(sessions, region):
        try:
            out += await apply_retention(sessions, scope, stores, now=now)
        except Exception:
            log.exception("retention for tenant %s in %s failed; the next run retries",
                          scope.tenant_id, region)
    return out
