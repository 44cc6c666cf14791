"""Outbound call requests: check the agent, the caller id and the callee's consent, then dial.

Ringing a phone cannot be rolled back, so the carrier is asked outside any transaction and at most
once per Idempotency-Key:
1. one transaction runs every check that can refuse, then commits the key (no response yet), the
   call row (status "dialing") and the audit row;
2. the carrier is asked, with no transaction open;
3. a second transaction records the carrier's sid (status "queued") or the failure (status "failed",
   disposition "dial_failed") on the call row, and the response on the key.
A request with the same key during step 2 gets 409 (in progress), afterwards the stored outcome,
a 502 included: after an unclear carrier failure the phone may ring anyway, so a retry that rang it
again is worse than asking the client for a new key.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from quart import Blueprint, Response
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control.api import audit
from control.api.auth import current_auth, require
from control.api.idempotency import REPLAY_HEADER, Outcome, Reservation, reserve_key
from control.api.openapi import operation
from control.api.outbound import DialError
from control.api.problems import PROBLEM_BASE, PROBLEM_JSON, ApiProblem, validation_problem
from control.api.routes.common import TENANT_PREFIX, json_response, outcome_response
from control.api.routes.consents import consent_granted
from control.api.routes.numbers import check_agent
from control.api.schemas import parse_body
from control.api.schemas_calls import OutboundCallAccepted, OutboundCallCreate
from control.api.state import api_state, sessions
from control.db.models import Call, PhoneNumber
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_update

log = logging.getLogger(__name__)
bp = Blueprint("outbound_calls", __name__, url_prefix=TENANT_PREFIX)

CONSENT_KIND: Final = "outbound_call"
DIALING: Final = "dialing"
DIAL_FAILED: Final = "dial_failed"


class _NoConsent(Exception):
    """Raised inside the transaction so that it rolls back; the refusal is audited after it."""


@operation(bp, "POST", "/calls", summary="Request an outbound call (needs the callee's consent)", status=202,
           body=OutboundCallCreate, response=OutboundCallAccepted, idempotent_create=True, errors=(502, 503))
@require("operator")
async def create_outbound_call(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(OutboundCallCreate)
    scope = current_auth().scope
    settings = api_state().settings
    call_id = uuid.uuid4()
    location = f"/v1/tenants/{tenant_id}/calls/{call_id}"
    base = settings.public_base_url.rstrip("/") or settings.cells.get(settings.region)

    async def begin(session: AsyncSession) -> None:
        await check_agent(session, scope, spec.agent_id)
        owned = await session.scalar(select(PhoneNumber.e164).where(PhoneNumber.e164 == spec.from_,
                                                                    PhoneNumber.tenant_id == scope.tenant_id))
        if owned is None:
            raise validation_problem([{"path": "from", "message": "not one of this tenant's phone numbers",
                                       "code": "not_found"}])
        if not await consent_granted(session, scope, spec.to, CONSENT_KIND):
            raise _NoConsent
        if settings.dialer is None or not base:
            raise ApiProblem(503, "Service Unavailable", "This cell is not configured to place calls.",
                             slug="dialer-unavailable")
        session.add(scope.new(Call, id=call_id, agent_id=spec.agent_id, direction="outbound",
                              from_e164=spec.from_, to_e164=spec.to, carrier="twilio", status=DIALING,
                              started_at=datetime.now(UTC), latency={}))
        audit.record(session, "call.outbound", "call", call_id, agent_id=str(spec.agent_id),
                     **{"from": spec.from_, "to": spec.to})
        await session.flush()

    try:
        reserved = await reserve_key(scope, spec.model_dump(mode="json", by_alias=True), begin)
    except _NoConsent:
        await audit.record_alone("call.outbound_refused", "call", None, reason="consent-required",
                                 agent_id=str(spec.agent_id), **{"from": spec.from_, "to": spec.to})
        raise ApiProblem(403, "Consent required",
                         f"There is no active {CONSENT_KIND} consent for the callee; record one with "
                         "POST .../consents before calling.", slug="consent-required") from None
    if isinstance(reserved, Outcome):
        return _replayed(reserved, tenant_id)

    # Shielded: a client that hangs up mid-dial must not leave the call "dialing" and the key held.
    placing = asyncio.ensure_future(_place(settings.dialer, scope, reserved.reservation, call_id, spec,
                                           f"{base}/twilio/voice?call_id={call_id}",
                                           # The status webhook takes our call id from its query too;
                                           # without it, it would derive one from the CallSid.
                                           f"{base}/twilio/status?call_id={call_id}"))
    outcome = await asyncio.shield(placing)
    if isinstance(outcome, ApiProblem):
        raise outcome
    return outcome_response(outcome, location=location)


async def _place(dialer: Any, scope: TenantScope, reservation: Reservation, call_id: uuid.UUID,
                 spec: OutboundCallCreate, voice_url: str, status_url: str) -> Outcome | ApiProblem:
    """Dial (no transaction open), then record the result on the call row and the key."""
    try:
        sid = await _dial(dialer, spec.to, spec.from_, voice_url=voice_url, status_url=status_url)
    except ApiProblem as exc:
        await _record_failure(scope, reservation, call_id, exc)
        return exc
    body = {"id": str(call_id), "status": "queued", "carrier_call_sid": sid}

    async def placed(session: AsyncSession) -> None:
        # The carrier's first status callback may have been ingested already: a status past
        # "dialing" and a sid it recorded are kept.
        await session.execute(
            scoped_update(Call, scope).where(Call.id == call_id)
            .values(carrier_call_sid=func.coalesce(Call.carrier_call_sid, sid),
                    status=case((Call.status == DIALING, "queued"), else_=Call.status)))
        await reservation.store(session, 202, body)

    await run_transaction(sessions(), placed, scope=scope)
    return Outcome(202, body, False)


async def _record_failure(scope: TenantScope, reservation: Reservation, call_id: uuid.UUID,
                          problem: ApiProblem) -> None:
    body = _problem_body(problem)

    async def work(session: AsyncSession) -> None:
        # Only while still dialing: if the carrier placed the call after all, its status events win.
        await session.execute(
            scoped_update(Call, scope).where(Call.id == call_id, Call.status == DIALING)
            .values(status="failed", disposition=DIAL_FAILED, ended_at=func.now()))
        audit.record(session, "call.outbound_failed", "call", call_id, reason=problem.slug)
        await reservation.store(session, problem.status, body)

    await run_transaction(sessions(), work, scope=scope)


def _problem_body(problem: ApiProblem) -> dict[str, Any]:
    # The same document the error handler renders, so that a replay answers exactly like the first time.
    body: dict[str, Any] = {"type": PROBLEM_BASE + (problem.slug or problem.title.lower().replace(" ", "-")),
                            "title": problem.title, "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    return {**body, **problem.extensions}


def _replayed(outcome: Outcome, tenant_id: uuid.UUID) -> Response:
    if outcome.status < 400:
        return outcome_response(outcome, location=f"/v1/tenants/{tenant_id}/calls/{outcome.body['id']}")
    # A stored failure (502) replays as the problem document it was.
    resp = json_response(outcome.body, outcome.status, {REPLAY_HEADER: "true"})
    resp.content_type = PROBLEM_JSON
    return resp


async def _dial(dialer: Any, to: str, from_: str, *, voice_url: str, status_url: str) -> str:
    try:
        sid = await dialer.dial(to=to, from_=from_, voice_url=voice_url, status_url=status_url)
    except DialError as exc:
        raise ApiProblem(502, "Bad Gateway", f"The carrier did not place the call: {exc}", slug="dial-failed",
                         retryable=exc.retryable) from None
    except Exception:
        log.exception("dialer %r failed", dialer)
        raise ApiProblem(502, "Bad Gateway", "The carrier did not place the call.", slug="dial-failed",
                         retryable=True) from None
    if not isinstance(sid, str) or not 0 < len(sid) <= 64:
        log.error("dialer %r returned no call id", dialer)
        raise ApiProblem(502, "Bad Gateway", "The carrier did not confirm the call.", slug="dial-failed",
                         retryable=True)
    return sid
