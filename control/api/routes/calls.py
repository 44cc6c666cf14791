"""Calls, read side: list and filter, detail, transcript, events and the recording.

The rows are written by the event consumer from the call's JetStream events; this module only reads
them, always through the tenant scope. The recording comes from the region's object store, sealed
with the tenant's data key (regions.sealed_store); it is opened only for a role allowed to listen, and
each download leaves an audit row.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
import wave
from typing import Final

from quart import Blueprint, Response, request
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.audit import record
from control.api.auth import current_auth, require
from control.api.openapi import QueryParam, operation
from control.api.problems import ApiProblem
from control.api.routes.common import TENANT_PREFIX, fetch_page, json_response, scoped_one
from control.api.routes.params import (
    DATETIME_SCHEMA,
    PAGE,
    UUID_SCHEMA,
    bad_query,
    choice_query,
    datetime_query,
    not_found,
    page_params,
    read_page,
    uuid_query,
)
from control.api.schemas_calls import CallEventList, CallEventOut, CallList, CallOut, Transcript, TurnOut
from control.api.state import api_state, sessions
from control.db.models import Call, CallEvent, Recording, Turn
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select
from regions.kms import KeyUnavailable, LocalKms
from regions.objectstore import ObjectKeyError, RegionStore
from regions.sealed_store import RecordingFormatError, SealedStore

log = logging.getLogger(__name__)
bp = Blueprint("calls", __name__, url_prefix=TENANT_PREFIX)

# The statuses a call row can have, as ingest stores them ("dialing": an outbound call whose carrier
# request is under way). Twilio spells some with a hyphen; the filter accepts that spelling too.
CALL_STATUSES: Final = ("dialing", "queued", "ringing", "in_progress", "completed", "busy", "failed",
                        "no_answer", "canceled")
_CALL_FILTERS: Final = (
    QueryParam("status", {"type": "string", "enum": list(CALL_STATUSES)},
               "The call's status; Twilio's spellings (in-progress, no-answer) are accepted too."),
    QueryParam("direction", {"type": "string", "enum": ["inbound", "outbound"]}),
    QueryParam("agent_id", UUID_SCHEMA),
    QueryParam("started_after", DATETIME_SCHEMA, "Calls started at or after this instant."),
    QueryParam("started_before", DATETIME_SCHEMA, "Calls started before this instant."),
    *PAGE,
)
_EVENT_PAGE: Final = page_params(200, 1000)
LISTEN_ROLE: Final = "operator"  # owner, admin and operator may listen to recordings; a viewer may not


async def load_call(session: AsyncSession, scope: TenantScope, call_id: uuid.UUID) -> Call:
    return await scoped_one(session, Call, scope, Call.id == call_id)


def _status_query() -> str | None:
    raw = request.args.get("status")
    if raw is None:
        return None
    status = raw.replace("-", "_")
    if status not in CALL_STATUSES:
        raise bad_query("status", f"one of {', '.join(CALL_STATUSES)}", "enum")
    return status


@operation(bp, "GET", "/calls", summary="List calls, newest first", response=CallList, query=_CALL_FILTERS)
@require("viewer")
async def list_calls(tenant_id: uuid.UUID) -> Response:
    status = _status_query()
    direction = choice_query("direction", ("inbound", "outbound"))
    agent_id = uuid_query("agent_id")
    after, before = datetime_query("started_after"), datetime_query("started_before")
    limit, offset = read_page()
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
        stmt = stmt.order_by(Call.started_at.desc(), Call.id)
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return CallList(items=[CallOut.model_validate(c) for c in rows], next_offset=next_offset)

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
    limit, offset = read_page(200, 1000)
    scope = current_auth().scope

    async def work(session: AsyncSession) -> CallEventList:
        await load_call(session, scope, call_id)
        stmt = (scoped_select(CallEvent, scope).where(CallEvent.call_id == call_id)
                .order_by(CallEvent.occurred_at, CallEvent.event_id))
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return CallEventList(items=[CallEventOut.model_validate(e) for e in rows], next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/calls/<uuid:call_id>/recording", summary="Download the call's recording",
           media_type="audio/wav")
@require(LISTEN_ROLE)
async def get_recording(tenant_id: uuid.UUID, call_id: uuid.UUID) -> Response:
    scope = current_auth().scope
    root = api_state().settings.object_store_root

    async def work(session: AsyncSession) -> list[Recording]:
        await load_call(session, scope, call_id)
        # One segment per media stream: a call resumed by another worker has several, in order.
        rows = list(await session.scalars(scoped_select(Recording, scope).where(Recording.call_id == call_id)
                                          .order_by(Recording.created_at, Recording.id)))
        if not rows:
            raise not_found()
        record(session, "call.recording_downloaded", "call", call_id, segments=len(rows))
        return rows

    if root is None:
        raise not_found()
    rows = await run_transaction(sessions(), work, scope=scope)
    key = api_state().settings.secrets_key
    store = SealedStore(RegionStore(root, scope.region), LocalKms(key) if key else None)
    segments: list[bytes] = []
    for rec in rows:
        # The key must name this tenant: a row pointing at another tenant's object is served as missing.
        if not rec.object_key.startswith(f"{scope.tenant_id}/"):
            continue
        try:
            segments.append(await asyncio.to_thread(store.get, rec.object_key))  # decrypted here only
        except (FileNotFoundError, IsADirectoryError, ObjectKeyError):
            log.warning("recording %s of call %s is missing from the %s store", rec.id, call_id, scope.region)
        except KeyUnavailable as exc:
            log.error("recording %s of call %s cannot be opened: %s", rec.id, call_id, exc)
            raise ApiProblem(503, "Recording key unavailable", f"The recording cannot be decrypted: {exc}.",
                             slug="recording-key-unavailable") from exc
        except RecordingFormatError as exc:
            log.error("recording %s of call %s is damaged: %s", rec.id, call_id, exc)
            raise ApiProblem(500, "Recording damaged", "The stored recording fails its integrity check.",
                             slug="recording-damaged") from exc
    if not segments:
        raise not_found()
    rec = rows[-1]
    data = segments[0] if len(segments) == 1 else _join_wavs(segments)
    return Response(data, status=200, content_type=rec.content_type or "audio/wav", headers={
        "Content-Disposition": f'attachment; filename="call-{call_id}.wav"',
        "Cache-Control": "private, no-store",
    })


def _join_wavs(segments: list[bytes]) -> bytes:
    """One WAV from the call's segments; segments in another format than the first are left out."""
    out = io.BytesIO()
    params = None
    with wave.open(out, "wb") as joined:
        for data in segments:
            try:
                with wave.open(io.BytesIO(data)) as part:
                    head = (part.getnchannels(), part.getsampwidth(), part.getframerate())
                    if params is None:
                        params = head
                        joined.setnchannels(head[0])
                        joined.setsampwidth(head[1])
                        joined.setframerate(head[2])
                    if head == params:
                        joined.writeframes(part.readframes(part.getnframes()))
            except (wave.Error, EOFError):
                log.warning("a recording segment is not a readable WAV; left out")
        if params is None:
            raise not_found()
    return out.getvalue()
