"""Calls, read side: list and filter, detail, transcript, events and the recording.

The rows are written by the event consumer from the call's JetStream events; this module only reads
them, always through the tenant scope. The recording comes from the region's object store.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Final

from quart import Blueprint, Response
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import current_auth, require
from control.api.openapi import QueryParam, operation
from control.api.routes.common import TENANT_PREFIX, int_query, json_response
from control.api.routes.params import (
    DATETIME_SCHEMA,
    PAGE,
    UUID_SCHEMA,
    choice_query,
    datetime_query,
    not_found,
    pattern_query,
    uuid_query,
)
from control.api.schemas_calls import CallEventList, CallEventOut, CallList, CallOut, Transcript, TurnOut
from control.api.state import api_state, sessions
from control.db.models import Call, CallEvent, Recording, Turn
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select
from regions.objectstore import ObjectKeyError, RegionStore

log = logging.getLogger(__name__)
bp = Blueprint("calls", __name__, url_prefix=TENANT_PREFIX)

# Carrier statuses (queued, ringing, in-progress, completed, busy, failed, no-answer, canceled, ...).
_STATUS: Final = re.compile(r"[a-z][a-z_-]{0,15}")
_CALL_FILTERS: Final = (
    QueryParam("status", {"type": "string", "pattern": r"^[a-z][a-z_-]{0,15}$"},
               "e.g. in-progress, completed"),
    QueryParam("direction", {"type": "string", "enum": ["inbound", "outbound"]}),
    QueryParam("agent_id", UUID_SCHEMA),
    QueryParam("started_after", DATETIME_SCHEMA, "Calls started at or after this instant."),
    QueryParam("started_before", DATETIME_SCHEMA, "Calls started before this instant."),
    *PAGE,
)
_EVENT_PAGE: Final = (
    QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200}),
    QueryParam("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0}),
)


async def load_call(session: AsyncSession, scope: TenantScope, call_id: uuid.UUID) -> Call:
    call = await session.scalar(scoped_select(Call, scope).where(Call.id == call_id))
    if call is None:
        raise not_found()
    return call


@operation(bp, "GET", "/calls", summary="List calls, newest first", response=CallList, query=_CALL_FILTERS)
@require("viewer")
async def list_calls(tenant_id: uuid.UUID) -> Response:
    status = pattern_query("status", _STATUS, "a call status such as in-progress or completed")
    direction = choice_query("direction", ("inbound", "outbound"))
    agent_id = uuid_query("agent_id")
    after, before = datetime_query("started_after"), datetime_query("started_before")
    limit = int_query("limit", 50, 1, 100)
    offset = int_query("offset", 0, 0, 1_000_000)
    scope = current_auth().scope

    async def work(session: AsyncSession) -> CallList:
        stmt = scoped_select(Call, scope)
        if status is not None:
            stmt = stmt.where(Call.status == status)
        if direction is not None:
            stmt = stmt.where(Call.direction == direction)
        if agent_id is not None:
            stmt = stmt.where(Call.agent_id == agent_id)
        if after is not None:
            stmt = stmt.where(Call.started_at >= after)
        if before is not None:
            stmt = stmt.where(Call.started_at < before)
        stmt = stmt.order_by(Call.started_at.desc(), Call.id).offset(offset).limit(limit + 1)
        rows = list(await session.scalars(stmt))
        return CallList(items=[CallOut.model_validate(c) for c in rows[:limit]],
                        next_offset=offset + limit if len(rows) > limit else None)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/calls/<uuid:call_id>", summary="Get a call", response=CallOut)
@require("viewer")
async def get_call(tenant_id: uuid.UUID, call_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> CallOut:
        return CallOut.model_validate(await load_call(session, scope, call_id))

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/calls/<uuid:call_id>/transcript", summary="The call's turns, in order (redacted)",
           response=Transcript)
@require("viewer")
async def get_transcript(tenant_id: uuid.UUID, call_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> Transcript:
        await load_call(session, scope, call_id)
        turns = await session.scalars(scoped_select(Turn, scope).where(Turn.call_id == call_id)
                                      .order_by(Turn.seq))
        return Transcript(call_id=call_id, turns=[TurnOut.model_validate(t) for t in turns])

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/calls/<uuid:call_id>/events", summary="The call's events, in order",
           response=CallEventList, query=_EVENT_PAGE)
@require("viewer")
async def list_events(tenant_id: uuid.UUID, call_id: uuid.UUID) -> Response:
    limit = int_query("limit", 200, 1, 1000)
    offset = int_query("offset", 0, 0, 1_000_000)
    scope = current_auth().scope

    async def work(session: AsyncSession) -> CallEventList:
        await load_call(session, scope, call_id)
        stmt = (scoped_select(CallEvent, scope).where(CallEvent.call_id == call_id)
                .order_by(CallEvent.occurred_at, CallEvent.event_id).offset(offset).limit(limit + 1))
        rows = list(await session.scalars(stmt))
        return CallEventList(items=[CallEventOut.model_validate(e) for e in rows[:limit]],
                             next_offset=offset + limit if len(rows) > limit else None)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/calls/<uuid:call_id>/recording", summary="Download the call's recording",
           media_type="audio/wav")
@require("viewer")
async def get_recording(tenant_id: uuid.UUID, call_id: uuid.UUID) -> Response:
    scope = current_auth().scope
    root = api_state().settings.object_store_root

    async def work(session: AsyncSession) -> Recording:
        await load_call(session, scope, call_id)
        rec = await session.scalar(scoped_select(Recording, scope).where(Recording.call_id == call_id)
                                   .order_by(Recording.created_at.desc(), Recording.id).limit(1))
        if rec is None:
            raise not_found()
        return rec

    rec = await run_transaction(sessions(), work, scope=scope)
    # The key must name this tenant: a row pointing at another tenant's object is served as missing.
    if root is None or not rec.object_key.startswith(f"{scope.tenant_id}/"):
        raise not_found()
    store = RegionStore(root, scope.region)
    try:
        data = await asyncio.to_thread(store.get, rec.object_key)
    except (FileNotFoundError, IsADirectoryError, ObjectKeyError):
        log.warning("recording %s of call %s is missing from the %s store", rec.id, call_id, scope.region)
        raise not_found() from None
    return Response(data, status=200, content_type=rec.content_type or "audio/wav", headers={
        "Content-Disposition": f'attachment; filename="call-{call_id}.wav"',
        "Cache-Control": "private, no-store",
    })
