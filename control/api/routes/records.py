"""Tool records, read side: what the tenant's agents kept during calls (screen results for the ATS,
reservations, messages), filtered by kind, call or agent, and per call. Written by the cell's record
responder (control.records); read here only through the tenant scope."""

from __future__ import annotations

import re
import uuid
from typing import Final

from quart import Blueprint, Response, request
from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession

from cells.contract.records import RECORD_KIND_PATTERN
from control.api.auth import current_auth, require
from control.api.openapi import QueryParam, operation
from control.api.routes.calls import load_call
from control.api.routes.common import TENANT_PREFIX, fetch_page, json_response
from control.api.routes.params import PAGE, UUID_SCHEMA, bad_query, read_page, uuid_query
from control.api.schemas_records import ToolRecordList, ToolRecordOut
from control.api.state import sessions
from control.db.models import ToolRecord
from control.db.session import run_transaction
from control.db.tenancy import scoped_select

bp = Blueprint("records", __name__, url_prefix=TENANT_PREFIX)
_FILTERS: Final = (
    QueryParam("kind", {"type": "string", "pattern": RECORD_KIND_PATTERN},
               "The record kind (reservation, screen_result, ...)."),
    QueryParam("call_id", UUID_SCHEMA, "Records written during this call."),
    QueryParam("agent_id", UUID_SCHEMA),
    *PAGE,
)


def _kind_query() -> str | None:
    raw = request.args.get("kind")
    if raw is not None and not re.match(RECORD_KIND_PATTERN, raw):
        raise bad_query("kind", "lower-case letters, digits and _", "pattern")
    return raw


@operation(bp, "GET", "/records", summary="List tool records, newest first", response=ToolRecordList,
           query=_FILTERS)
@require("viewer")
async def list_records(tenant_id: uuid.UUID) -> Response:
    kind, call_id, agent_id = _kind_query(), uuid_query("call_id"), uuid_query("agent_id")
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> ToolRecordList:
        stmt = scoped_select(ToolRecord, scope)
        if kind is not None:
            stmt = stmt.where(ToolRecord.kind == kind)
        if call_id is not None:
            stmt = stmt.where(ToolRecord.call_id == call_id)
        if agent_id is not None:
            stmt = stmt.where(ToolRecord.agent_id == agent_id)
        stmt = stmt.order_by(ToolRecord.created_at.desc(), ToolRecord.id)
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return ToolRecordList(items=[ToolRecordOut.model_validate(r) for r in rows], next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/calls/<uuid:call_id>/records", summary="What the call's tools kept, in order",
           response=ToolRecordList)
@require("viewer")
async def call_records(tenant_id: uuid.UUID, call_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> ToolRecordList:
        call = await load_call(session, scope, call_id)  # 404 for another tenant's call
        same = ToolRecord.call_id == call.id
        if call.carrier_call_sid:
            same = or_(same, ToolRecord.call_sid == call.carrier_call_sid)
        rows = await session.scalars(scoped_select(ToolRecord, scope).where(same)
                                     .order_by(ToolRecord.created_at, ToolRecord.id))
        return ToolRecordList(items=[ToolRecordOut.model_validate(r) for r in rows], next_offset=None)

    return json_response(await run_transaction(sessions(), work, scope=scope))
