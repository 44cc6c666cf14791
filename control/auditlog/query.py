"""Reading the audit log: filters, pages (newest first) and exports as JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.db.models import AuditLog
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select

EXPORT_COLUMNS: Final = ("id", "created_at", "actor", "actor_role", "via", "source", "action",
                         "target_type", "target_id", "details")
EXPORT_BATCH: Final = 500
_Key = tuple[datetime, uuid.UUID]  # (created_at, id) of the last row exported


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None  # exact, or a prefix ending in '*' ("POST *", "erasure.*")
    actor: str | None = None
    via: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filtered(scope: TenantScope, f: AuditFilter) -> Select[tuple[AuditLog]]:
    stmt = scoped_select(AuditLog, scope)
    if f.action is not None:
        if f.action.endswith("*"):
            stmt = stmt.where(AuditLog.action.like(_escape_like(f.action[:-1]) + "%", escape="\\"))
        else:
            stmt = stmt.where(AuditLog.action == f.action)
    for column, value in ((AuditLog.actor, f.actor), (AuditLog.via, f.via),
                          (AuditLog.target_type, f.target_type), (AuditLog.target_id, f.target_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.since is not None:
        stmt = stmt.where(AuditLog.created_at >= f.since)
    if f.until is not None:
        stmt = stmt.where(AuditLog.created_at < f.until)
    return stmt


def newest_first(stmt: Select[tuple[AuditLog]]) -> Select[tuple[AuditLog]]:
    return stmt.order_by(AuditLog.created_at.desc(), AuditLog.id.desc())


def as_dict(row: AuditLog) -> dict[str, Any]:
    return {"id": str(row.id), "created_at": row.created_at.isoformat(), "actor": row.actor,
            "actor_role": row.actor_role, "via": row.via, "source": row.source, "action": row.action,
            "target_type": row.target_type, "target_id": row.target_id, "details": row.details or {}}


async def export_rows(sessions: async_sessionmaker[AsyncSession], scope: TenantScope,
                      f: AuditFilter) -> AsyncIterator[dict[str, Any]]:
    """Every matching row, newest first, read in keyset batches (each in its own short transaction),
    so an export of a large log neither holds a transaction open nor pages by a growing offset."""
    after: _Key | None = None
    while True:
        async def read(session: AsyncSession, after: _Key | None = after) -> list[AuditLog]:
            stmt = filtered(scope, f)
            if after is not None:
                at, row_id = after
                stmt = stmt.where(or_(AuditLog.created_at < at,
                                      and_(AuditLog.created_at == at, AuditLog.id < row_id)))
            return list(await session.scalars(newest_first(stmt).limit(EXPORT_BATCH)))

        rows = await run_transaction(sessions, read, scope=scope)
        for row in rows:
            yield as_dict(row)
        if len(rows) < EXPORT_BATCH:
            return
        after = (rows[-1].created_at, rows[-1].id)


def jsonl_line(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"), sort_keys=True) + "\n"


def csv_header() -> str:
    return csv_line(dict.fromkeys(EXPORT_COLUMNS, None), header=True)


def csv_line(item: dict[str, Any], *, header: bool = False) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(EXPORT_COLUMNS)
    else:
        writer.writerow([_cell(item[c], c) for c in EXPORT_COLUMNS])
    return buf.getvalue()


_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any, column: str) -> str:
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True, separators=(",", ":")) if column == "details" else str(value)
    # A spreadsheet runs a cell that starts like a formula; a leading quote keeps it text.
    return "'" + text if text.startswith(_FORMULA_START) else text
