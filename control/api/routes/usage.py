"""Usage: the tenant's ledger (one record per call) summed over a range of UTC days."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Final

from quart import Blueprint, Response, request
from sqlalchemy import Date, cast, func
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import current_auth, require
from control.api.openapi import QueryParam, operation
from control.api.routes.common import TENANT_PREFIX, json_response
from control.api.routes.params import DATE_SCHEMA, bad_query, date_query
from control.api.schemas_calls import UsageDay, UsageReport, UsageTotals
from control.api.state import sessions
from control.db.models import UsageRecord
from control.db.session import run_transaction
from control.db.tenancy import scoped_select

bp = Blueprint("usage", __name__, url_prefix=TENANT_PREFIX)

MAX_DAYS: Final = 366
_QUERY: Final = (
    QueryParam("from", DATE_SCHEMA, "First day, inclusive (UTC); default: the first of this month."),
    QueryParam("to", DATE_SCHEMA, "Last day, inclusive (UTC); default: today."),
)


@operation(bp, "GET", "/usage", summary="Usage totals and per-day rows", response=UsageReport, query=_QUERY)
@require("viewer")
async def get_usage(tenant_id: uuid.UUID) -> Response:
    today = datetime.now(UTC).date()
    first = date_query("from", today.replace(day=1))
    last = date_query("to", today)
    # A bad range is blamed on a parameter the client sent: `to` if it sent both, else the one it sent
    # (the other is its default, which the message names).
    blame = "from" if "to" not in request.args else "to"
    other = {"from": "`to` (default: today)", "to": "`from`" if "from" in request.args
             else "`from` (default: the first day of this month)"}[blame]
    if last < first:
        order = "after" if blame == "from" else "before"
        raise bad_query(blame, f"must not be {order} {other}", "range")
    if (last - first).days >= MAX_DAYS:
        raise bad_query(blame, f"a range of at most {MAX_DAYS} days together with {other}", "range")
    try:
        start = datetime.combine(first, time.min, UTC)
        end = datetime.combine(last, time.min, UTC) + timedelta(days=1)
    except OverflowError:
        raise bad_query("to", "a date before 9999-12-31", "range") from None
    scope = current_auth().scope

    async def work(session: AsyncSession) -> UsageReport:
        # The day in UTC, whatever the database session's time zone is.
        day = cast(func.timezone("UTC", UsageRecord.created_at), Date).label("day")
        rows = (scoped_select(UsageRecord, scope)
                .where(UsageRecord.created_at >= start, UsageRecord.created_at < end)
                .with_only_columns(day, UsageRecord.currency, func.count(UsageRecord.id),
                                   func.coalesce(func.sum(UsageRecord.billable_seconds), 0),
                                   func.coalesce(func.sum(UsageRecord.amount_micros), 0))
                .group_by(day, UsageRecord.currency).order_by(day, UsageRecord.currency))
        days = [UsageDay(date=d, currency=cur, calls=n, billable_seconds=int(secs), amount_micros=int(micros))
                for d, cur, n, secs, micros in (await session.execute(rows)).all()]
        totals: dict[str, UsageTotals] = {}
        for d in days:
            t = totals.setdefault(d.currency, UsageTotals(currency=d.currency, calls=0, billable_seconds=0,
                                                          amount_micros=0))
            t.calls += d.calls
            t.billable_seconds += d.billable_seconds
            t.amount_micros += d.amount_micros
        return UsageReport(from_date=first, to_date=last, days=days,
                           totals=sorted(totals.values(), key=lambda t: t.currency))

    return json_response(await run_transaction(sessions(), work, scope=scope))
