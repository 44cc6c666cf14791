"""Hard deletion of chosen calls of one tenant from every store, certified in the audit log.

Order: the live stores first (JetStream events and state, then the recording objects), the database
last, in one transaction with the certificate's audit row. If a live store fails, the database still
holds the calls, so the next run finds and purges them again (every step is idempotent); the reverse
order could lose track of data it had not deleted yet. Purging the call's event subject first also
stops the event consumer from re-creating a deleted call row from a backlog.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from nats.js import JetStreamContext
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.auditlog.writer import system_row
from control.db.models import Call, CallEvent, Recording, ToolRecord, Turn, UsageRecord, WebhookDelivery
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_delete, scoped_select
from control.retention.certificate import Certificate
from control.retention.stores import call_objects, purge_jetstream, purge_objects, recordings_in_state
from regions.objectstore import RegionStore

MAX_CALLS_PER_RUN: Final = 500
# Children before their call (foreign keys); usage has no cascade, deliveries are keyed by event id.
_CALL_TABLES: Final = (("turns", Turn), ("call_events", CallEvent), ("recordings", Recording),
                       ("usage_ledger", UsageRecord))


@dataclass(frozen=True)
class LiveStores:
    """The region's stores beside the database; None for one that is not configured here."""

    js: JetStreamContext | None
    objects: RegionStore | None
    region_key: bytes | None = None  # signs certificates (the region's secret key)


async def _recording_keys(sessions: async_sessionmaker[AsyncSession], scope: TenantScope,
                          call_ids: Sequence[uuid.UUID], before: datetime | None) -> dict[str, list[str]]:
    async def read(session: AsyncSession) -> dict[str, list[str]]:
        stmt = scoped_select(Recording, scope).where(Recording.call_id.in_(call_ids))
        if before is not None:
            stmt = stmt.where(Recording.created_at < before)
        out: dict[str, list[str]] = {str(c): [] for c in call_ids}
        for rec in await session.scalars(stmt):
            out[str(rec.call_id)].append(rec.object_key)
        return out

    return await run_transaction(sessions, read, scope=scope)


async def _count(session: AsyncSession, model: Any, scope: TenantScope, *where: Any) -> int:
    stmt = select(func.count()).select_from(model).where(
        model.tenant_id == scope.tenant_id, model.region == scope.region, *where)
    return int(await session.scalar(stmt) or 0)


async def _delete(session: AsyncSession, cert: Certificate, name: str, model: Any, scope: TenantScope,
                  *where: Any) -> None:
    report = cert.report(f"database:{name}")
    result = await session.execute(scoped_delete(model, scope).where(*where))
    report.found = report.deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
    report.remaining = await _count(session, model, scope, *where)


async def _delete_calls(session: AsyncSession, cert: Certificate, scope: TenantScope,
                        call_ids: Sequence[uuid.UUID]) -> None:
    event_ids = list(await session.scalars(
        scoped_select(CallEvent, scope).where(CallEvent.call_id.in_(call_ids))
        .with_only_columns(CallEvent.event_id)))
    # Webhook payloads repeat the call's (redacted) data; their rows go with the events they carry.
    await _delete(session, cert, "webhook_deliveries", WebhookDelivery, scope,
                  WebhookDelivery.event_id.in_(event_ids))
    usage = (await session.execute(
        scoped_select(UsageRecord, scope).where(UsageRecord.call_id.in_(call_ids))
        .with_only_columns(func.coalesce(func.sum(UsageRecord.billable_seconds), 0),
                           func.coalesce(func.sum(UsageRecord.amount_micros), 0)))).one()
    # Billing keeps its totals (no caller data in them) in the certificate once the rows are gone.
    cert.criteria["usage_deleted"] = {"billable_seconds": int(usage[0]), "amount_micros": int(usage[1])}
    for name, model in _CALL_TABLES:
        await _delete(session, cert, name, model, scope, model.call_id.in_(call_ids))
    # What agents' record tools kept (a reservation's name and phone): by call id, and by the carrier's
    # call id for a record written before its call row existed (its call_id is then empty).
    sids = [s for s in await session.scalars(
        scoped_select(Call, scope).where(Call.id.in_(call_ids)).with_only_columns(Call.carrier_call_sid))
        if s]
    await _delete(session, cert, "tool_records", ToolRecord, scope,
                  or_(ToolRecord.call_id.in_(call_ids), ToolRecord.call_sid.in_(sids)))
    await _delete(session, cert, "calls", Call, scope, Call.id.in_(call_ids))


async def purge_calls(sessions: async_sessionmaker[AsyncSession], scope: TenantScope,
                      call_ids: Sequence[uuid.UUID], stores: LiveStores, *, reason: str,
                      criteria: dict[str, Any], actor: str, recordings_before: datetime | None = None
                      ) -> dict[str, Any]:
    """Delete `call_ids` of `scope`'s tenant everywhere (or, with `recordings_before`, only their
    recordings made before then) and return the sealed certificate, also kept in the audit log."""
    cert = Certificate(scope.tenant_id, scope.region, reason, datetime.now(UTC), criteria=dict(criteria))
    cert.call_ids = [str(c) for c in call_ids]
    recordings_only = recordings_before is not None
    cert.criteria["scope"] = "recordings" if recordings_only else "calls"
    listed = await _recording_keys(sessions, scope, call_ids, recordings_before)
    if stores.js is not None and not recordings_only:
        for call_id in cert.call_ids:
            listed[call_id] += await recordings_in_state(stores.js, scope.region, call_id)
        await purge_jetstream(stores.js, cert, cert.call_ids)
    elif not recordings_only:
        report = cert.report(f"jetstream:{scope.region}")
        report.note, report.checked = "no NATS configured for this process", False
    keys: set[str] = set()
    for call_id, known in listed.items():
        if stores.objects is None:
            break
        keys |= (set(k for k in known if k.startswith(f"{scope.tenant_id}/")) if recordings_only
                 else call_objects(stores.objects, scope.tenant_id, call_id, known))
    await purge_objects(stores.objects, cert, keys)

    async def work(session: AsyncSession) -> dict[str, Any]:
        if recordings_only:
            await _delete(session, cert, "recordings", Recording, scope,
                          Recording.call_id.in_(call_ids), Recording.created_at < recordings_before)
        else:
            await _delete_calls(session, cert, scope, call_ids)
        cert.finished_at = datetime.now(UTC)
        sealed = cert.sealed(stores.region_key)
        session.add(system_row(scope, f"{reason}.purge", "call", None, {"certificate": sealed}, actor=actor))
        return sealed

    return await run_transaction(sessions, work, scope=scope)
