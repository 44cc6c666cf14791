"""The cell's Twilio voice webhook: a dialled number -> tenant and agent -> a worker slot over NATS.

The number directory is global, but a cell only answers for numbers of its own region whose tenant
is homed here; anything else hears "not in service" (a number points at the wrong cell only through
a misconfiguration, and serving it would move that tenant's call data out of its region).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cells.contract.call_token import CallTokenAuthority
from cells.contract.envelope import CallEventEnvelope, call_id_for_sid
from cells.contract.twilio_webhook import (
    OUTBOUND_API,
    NumberRoute,
    SlotRequest,
    WebhookSettings,
    WorkerSlot,
    twilio_voice_blueprint,
)
from control.api.agent_gate import BEHAVIOUR_FIELDS
from control.api.schemas import AgentOut
from control.api.sealing import unseal_providers
from control.api.settings import ControlSettings
from control.api.state import sessions
from control.db.models import Agent, AgentVersion, Call, PhoneNumber, Tenant
from control.db.tenancy import TenantScope, scoped_select

log = logging.getLogger(__name__)
_STATUS = re.compile(r"[a-z][a-z-]{1,19}")  # Twilio's CallStatus values: queued, in-progress, no-answer, ...

Publish = Callable[[CallEventEnvelope], Awaitable[None]]
RequestSlot = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]
ShouldResume = Callable[[str], Awaitable[bool]]
ClaimCall = Callable[..., Awaitable[bool]]
# The disposition of a call whose worker went mid-call when no other worker could take it over.
RESUME_FAILED = "dropped_no_worker"
_BACKGROUND: set[asyncio.Task[Any]] = set()


def _background(coro: Awaitable[Any]) -> None:
    """Run `coro` to its end even though the request that started it is gone."""
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def make_call_id(form: dict[str, str], query_id: str | None) -> str:
    """Our call id: the UUID an outbound call carries in its voice URL, else one derived from the CallSid."""
    return _uuid_or_none(query_id) or str(call_id_for_sid(form.get("CallSid", "")))


def our_number(form: dict[str, str]) -> str:
    return form.get("From" if form.get("Direction", "inbound") == OUTBOUND_API else "To", "")


async def number_route(region: str, e164: str) -> NumberRoute | None:
    async with sessions()() as session:
        row = await session.get(PhoneNumber, e164)
        if row is None or row.agent_id is None:
            return None
        home = await session.scalar(select(Tenant.home_region).where(Tenant.id == row.tenant_id))
    if row.region != region or home != region:
        log.warning("number routed to the %s cell but homed in %s (tenant in %s); not answering",
                    region, row.region, home)
        return None
    return NumberRoute(str(row.tenant_id), str(row.agent_id))


async def agent_spec(region: str, tenant_id: str, agent_id: str, secrets_key: bytes | None = None, *,
                     resume_call: str | None = None) -> dict[str, Any] | None:
    """The agent as its worker needs it: provider secrets opened (they travel in the slot request,
    which NATS does not keep). Its behaviour is the newest published version (`version`; the record
    itself, `version` None, while none is published); a resumed call (`resume_call`) gets the version
    it started with, even when a newer one was published meanwhile."""
    scope = TenantScope(uuid.UUID(tenant_id), region)
    async with sessions()() as session:
        agent = await session.scalar(scoped_select(Agent, scope).where(Agent.id == uuid.UUID(agent_id)))
        if agent is None:
            return None
        version = await _version_for(session, scope, agent, resume_call)
    spec = AgentOut.model_validate(agent).model_dump(mode="json")
    spec["version"] = None
    if version is not None:
        spec.update({k: v for k, v in version.snapshot.items() if k in BEHAVIOUR_FIELDS})
        spec["version"] = version.version
    spec["providers"] = unseal_providers(spec["providers"], secrets_key, tenant_id)
    return spec


async def _version_for(session: AsyncSession, scope: TenantScope, agent: Agent,
                       resume_call: str | None) -> AgentVersion | None:
    call_id = _uuid_or_none(resume_call)
    if call_id is not None:
        started = (await session.execute(
            scoped_select(Call, scope).where(Call.id == uuid.UUID(call_id))
            .with_only_columns(Call.agent_version))).first()
        if started is not None:  # the call is on record: it keeps what it started with
            if started[0] is None:
                return None  # the unpublished record
            return await session.scalar(scoped_select(AgentVersion, scope).where(
                AgentVersion.agent_id == agent.id, AgentVersion.version == started[0]))
    if agent.published_version is None:
        return None
    return await session.scalar(scoped_select(AgentVersion, scope).where(
        AgentVersion.agent_id == agent.id, AgentVersion.version == agent.published_version))


def cell_voice_blueprint(settings: ControlSettings, *, tokens: CallTokenAuthority, publish: Publish,
                         request_slot: RequestSlot, should_resume: ShouldResume,
                         claim_call: ClaimCall | None = None,
                         allow_insecure_streams: bool = False) -> Blueprint:
    region = settings.region
    if not settings.twilio_auth_token:
        raise ValueError("the voice webhook needs the Twilio auth token to check signatures")
    public = settings.public_base_url or settings.cells.get(region, "")

    async def lookup(e164: str) -> NumberRoute | None:
        return await number_route(region, e164)

    async def slot(req: SlotRequest) -> WorkerSlot | None:
        spec = await agent_spec(region, req.tenant_id, req.agent_id, settings.secrets_key,
                                resume_call=req.call_id if req.resume else None)
        if spec is None:
            return None

        def unassigned() -> CallEventEnvelope:
            # The caller hears the busy message; the call must not stay "ringing" or "in progress".
            if not req.resume:
                return CallEventEnvelope.new(
                    call_id=req.call_id, tenant_id=req.tenant_id, region=region, kind="call_rejected",
                    event_id=f"{req.call_id}:rejected", source="control", data={"reason": "no_worker"})
            # The caller talked to an agent until its worker went: an ended (billed) call, not a
            # rejected one, with a disposition that tells the tenant why it stopped.
            return CallEventEnvelope.new(
                call_id=req.call_id, tenant_id=req.tenant_id, region=region, kind="call_ended",
                event_id=f"{req.call_id}:resume-failed", source="control",
                data={"disposition": RESUME_FAILED})

        if not req.resume and claim_call is not None and not await claim_call(
                req.call_id, tenant_id=req.tenant_id, agent_id=req.agent_id, call_sid=req.call_sid):
            # The same call's webhook again (replayed, or repeated): the call is ringing, live or over
            # and has its worker; no second slot, no second stream token, no event.
            log.warning("voice webhook for call %s again; no new stream", req.call_id)
            return None
        try:
            if not req.resume:
                # Before a worker is asked: the call row exists even if no worker is free.
                await publish(CallEventEnvelope.new(
                    call_id=req.call_id, tenant_id=req.tenant_id, region=region, kind="call_created",
                    event_id=f"{req.call_id}:created", source="control",
                    data={"direction": "outbound" if req.direction.startswith("outbound") else "inbound",
                          "from": req.from_number, "to": req.to_number, "agent_id": req.agent_id,
                          "agent_version": spec.get("version"), "call_sid": req.call_sid,
                          "carrier": "twilio"}))
            reply = await request_slot({
                "call_id": req.call_id, "call_sid": req.call_sid, "tenant_id": req.tenant_id,
                "region": region, "agent_id": req.agent_id, "agent": spec, "from": req.from_number,
                "to": req.to_number, "direction": req.direction, "resume": req.resume})
        except asyncio.CancelledError:
            # The webhook's deadline ran out (a slow event store or worker pool): the caller hears the
            # busy message, so the call must end here too, from outside this cancelled request.
            _background(publish(unassigned()))
            raise
        except Exception:
            log.exception("asking the workers for a slot failed for call %s", req.call_id)
            reply = None
        if not reply or not reply.get("accepted") or not reply.get("stream_url"):
            await publish(unassigned())
            return None
        # The call token names the worker as its audience: only that worker accepts the stream.
        return WorkerSlot(str(reply["stream_url"]), worker_id=str(reply.get("worker_id") or "") or None)

    async def resume(call_sid: str, form: dict[str, str]) -> bool:
        return await should_resume(make_call_id(form, request.args.get("call_id")))

    async def status(form: dict[str, str]) -> None:
        route = await number_route(region, our_number(form))
        call_status = form.get("CallStatus", "")
        if route is None or not _STATUS.fullmatch(call_status):
            return
        call_id = make_call_id(form, request.args.get("call_id"))
        data: dict[str, Any] = {"call_status": call_status}
        if form.get("CallDuration", "").isdigit():
            data["call_duration"] = int(form["CallDuration"])
        await publish(CallEventEnvelope.new(
            call_id=call_id, tenant_id=route.tenant_id, region=region, kind="call_status",
            event_id=f"{call_id}:status:{call_status}", source="control", data=data))

    return twilio_voice_blueprint(
        WebhookSettings(auth_token=settings.twilio_auth_token, shared_keys=settings.twilio_shared_keys,
                        public_base_url=public,
                        allow_insecure_streams=allow_insecure_streams,
                        # a plain-http cell is a local stack: a peer may call it by another host name
                        accept_request_host=allow_insecure_streams),
        tokens=tokens, lookup_number=lookup, request_slot=slot, on_status=status,
        should_resume=resume, make_call_id=make_call_id)
