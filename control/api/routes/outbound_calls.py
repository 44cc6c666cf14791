"""Outbound call requests: check the agent, the caller id and the callee's consent, then dial.

Order matters: every check that can refuse runs before the carrier is asked, and the call row and its
audit row are written in the same transaction as the idempotency key, only after the carrier accepted.
A carrier failure therefore leaves nothing behind and the same Idempotency-Key can be retried.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from control.api import audit
from control.api.auth import current_auth, require
from control.api.idempotency import idempotent_create
from control.api.openapi import operation
from control.api.outbound import DialError
from control.api.problems import ApiProblem, validation_problem
from control.api.routes.common import TENANT_PREFIX, outcome_response
from control.api.routes.consents import consent_granted
from control.api.routes.numbers import check_agent
from control.api.schemas import parse_body
from control.api.schemas_calls import OutboundCallAccepted, OutboundCallCreate
from control.api.state import api_state
from control.db.models import Call, PhoneNumber
from control.db.tenancy import TenantScope

log = logging.getLogger(__name__)
bp = Blueprint("outbound_calls", __name__, url_prefix=TENANT_PREFIX)

CONSENT_KIND = "outbound_call"


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
    # The carrier's sid once dialled: a transaction retried after a serialization failure must not
    # ring the callee a second time.
    placed: list[str] = []

    async def create(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        await check_agent(session, scope, spec.agent_id)
        owned = await session.scalar(select(PhoneNumber.e164).where(PhoneNumber.e164 == spec.from_,
                                                                    PhoneNumber.tenant_id == scope.tenant_id))
        if owned is None:
            raise validation_problem([{"path": "from", "message": "not one of this tenant's phone numbers",
                                       "code": "not_found"}])
        if not await consent_granted(session, scope, spec.to, CONSENT_KIND):
            raise _NoConsent
        base = settings.public_base_url.rstrip("/") or settings.cells.get(settings.region)
        if settings.dialer is None or not base:
            raise ApiProblem(503, "Service Unavailable", "This cell is not configured to place calls.",
                             slug="dialer-unavailable")
        if not placed:
            placed.append(await _dial(settings.dialer, spec.to, spec.from_,
                                      voice_url=f"{base}/twilio/voice?call_id={call_id}",
                                      # The status webhook takes our call id from its query too;
                                      # without it, it would derive one from the CallSid.
                                      status_url=f"{base}/twilio/status?call_id={call_id}"))
        sid = placed[0]
        await _upsert_call(session, scope, call_id, spec, sid)
        audit.record(session, "call.outbound", "call", call_id, agent_id=str(spec.agent_id),
                     **{"from": spec.from_, "to": spec.to, "carrier_call_sid": sid})
        await session.flush()
        return 202, {"id": str(call_id), "status": "queued", "carrier_call_sid": sid}

    try:
        outcome = await idempotent_create(scope, spec.model_dump(mode="json", by_alias=True), create)
    except _NoConsent:
        await audit.record_alone("call.outbound_refused", "call", None, reason="consent-required",
                                 agent_id=str(spec.agent_id), **{"from": spec.from_, "to": spec.to})
        raise ApiProblem(403, "Consent required",
                         f"There is no active {CONSENT_KIND} consent for the callee; record one with "
                         "POST .../consents before calling.", slug="consent-required") from None
    return outcome_response(outcome, location=f"/v1/tenants/{tenant_id}/calls/{outcome.body['id']}")


async def _upsert_call(session: AsyncSession, scope: TenantScope, call_id: uuid.UUID,
                       spec: OutboundCallCreate, sid: str) -> None:
    """Insert the queued call row; if the event consumer got there first, fill in what it lacks.

    The consumer upserts by id too, so either order ends with one row. The carrier's first status
    callback can in principle be persisted before this transaction commits; its status is newer than
    "queued" and is kept, while the request's own facts (direction, numbers, agent) win.
    """
    now = datetime.now(UTC)
    stmt = pg_insert(Call).values(
        id=call_id, tenant_id=scope.tenant_id, region=scope.region, agent_id=spec.agent_id,
        direction="outbound", from_e164=spec.from_, to_e164=spec.to, carrier="twilio", carrier_call_sid=sid,
        status="queued", started_at=now, latency={})
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["id", "region"],
        set_={"agent_id": stmt.excluded.agent_id, "direction": stmt.excluded.direction,
              "from_e164": stmt.excluded.from_e164, "to_e164": stmt.excluded.to_e164,
              "carrier_call_sid": func.coalesce(Call.carrier_call_sid, stmt.excluded.carrier_call_sid)},
        # A uuid4 collision with another tenant's call is not a thing, but never touch one anyway.
        where=(Call.tenant_id == scope.tenant_id)))


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
