"""Audit rows for mutating API actions: who (the token), did what, to which resource.

`record` adds the row to the caller's transaction, so the action and its audit row commit together
or not at all. `record_alone` is for refusals whose transaction is rolled back (a missing consent):
the refusal itself must still leave a trace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quart import g, request
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import current_auth
from control.api.state import sessions
from control.auditlog.writer import network_prefix
from control.db.models import AuditLog
from control.db.session import run_transaction


def _row(action: str, target_type: str, target_id: object | None, details: dict[str, Any]) -> AuditLog:
    ctx = current_auth()
    g.audited = True  # this request has its row: control.api.routes.compliance's hook adds none
    return ctx.scope.new(AuditLog, actor=f"token:{ctx.token_id}", actor_role=ctx.role, action=action,
                         target_type=target_type, source=network_prefix(request.remote_addr),
                         target_id=None if target_id is None else str(target_id), details=details,
                         created_at=datetime.now(UTC))


def record(session: AsyncSession, action: str, target_type: str, target_id: object | None = None,
           **details: Any) -> AuditLog:
    """Add an audit row to `session`'s transaction. Never put secrets in `details`."""
    row = _row(action, target_type, target_id, details)
    session.add(row)
    return row


async def record_alone(action: str, target_type: str, target_id: object | None = None,
                       **details: Any) -> None:
    """Write an audit row in a transaction of its own (for a refused request that writes nothing else)."""
    async def work(session: AsyncSession) -> None:
        session.add(_row(action, target_type, target_id, details))

    await run_transaction(sessions(), work, scope=current_auth().scope)
