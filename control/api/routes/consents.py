"""Consents: who agreed (or refused) to what, from which source, until when; revocable, never deleted.

A consent decision is the latest active record (not revoked, not expired) for a subject and kind:
a refusal recorded after a grant withdraws it, and no active record means no consent.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from quart import Blueprint, Response
from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession

from control.api import audit
from control.api.auth import current_auth, require
from control.api.idempotency import idempotent_create
from control.api.openapi import QueryParam, operation
from control.api.routes.common import (
    TENANT_PREFIX,
    fetch_page,
    json_response,
    outcome_response,
    scoped_one,
)
from control.api.routes.params import PAGE, choice_query, pattern_query, read_page
from control.api.schemas import parse_body
from control.api.schemas_calls import ConsentCreate, ConsentKind, ConsentList, ConsentOut
from control.api.schemas_directory import E164_PATTERN
from control.api.state import sessions
from control.db.models import Consent
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select

bp = Blueprint("consents", __name__, url_prefix=TENANT_PREFIX)

_KINDS: Final = ConsentKind.__args__  # type: ignore[attr-defined]
_E164: Final = re.compile(E164_PATTERN)
_FILTERS: Final = (
    QueryParam("subject_e164", {"type": "string", "pattern": E164_PATTERN}, "Only this person's consents."),
    QueryParam("kind", {"type": "string", "enum": list(_KINDS)}),
    *PAGE,
)


async def consent_granted(session: AsyncSession, scope: TenantScope, subject_e164: str, kind: str,
                          now: datetime | None = None) -> bool:
    """Whether `subject_e164` currently consents to `kind` for this tenant."""
    now = now or datetime.now(UTC)
    stmt = (scoped_select(Consent, scope)
            .where(Consent.subject_e164 == subject_e164, Consent.kind == kind, Consent.revoked_at.is_(None),
                   or_(Consent.expires_at.is_(None), Consent.expires_at > now))
            .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1))
    latest = await session.scalar(stmt)
    return latest is not None and latest.granted


def _out(row: Consent) -> dict[str, Any]:
    return ConsentOut.model_validate(row).model_dump(mode="json")


@operation(bp, "POST", "/consents", summary="Record a consent (or a refusal)", status=201, body=ConsentCreate,
           response=ConsentOut, idempotent_create=True)
@require("operator")
async def create_consent(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(ConsentCreate)
    scope = current_auth().scope

    async def create(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        row = scope.new(Consent, id=uuid.uuid4(), subject_e164=spec.subject_e164, kind=spec.kind,
                        granted=spec.granted, source=spec.source, recorded_at=datetime.now(UTC),
                        expires_at=spec.expires_at)
        session.add(row)
        await session.flush()
        audit.record(session, "consent.create", "consent", row.id, kind=spec.kind, granted=spec.granted)
        return 201, _out(row)

    outcome = await idempotent_create(scope, spec.model_dump(mode="json"), create)
    return outcome_response(outcome, location=f"/v1/tenants/{tenant_id}/consents/{outcome.body['id']}")


@operation(bp, "GET", "/consents", summary="List consents, newest first", response=ConsentList,
           query=_FILTERS)
@require("viewer")
async def list_consents(tenant_id: uuid.UUID) -> Response:
    subject = pattern_query("subject_e164", _E164, "an E.164 number such as +442071838750")
    kind = choice_query("kind", _KINDS)
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> ConsentList:
        stmt = scoped_select(Consent, scope)
        if subject is not None:
            stmt = stmt.where(Consent.subject_e164 == subject)
        if kind is not None:
            stmt = stmt.where(Consent.kind == kind)
        stmt = stmt.order_by(Consent.recorded_at.desc(), Consent.id)
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return ConsentList(items=[ConsentOut.model_validate(c) for c in rows], next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/consents/<uuid:consent_id>", summary="Get a consent", response=ConsentOut)
@require("viewer")
async def get_consent(tenant_id: uuid.UUID, consent_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _out(await scoped_one(session, Consent, scope, Consent.id == consent_id))

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "POST", "/consents/<uuid:consent_id>/revoke", summary="Revoke a consent (idempotent)",
           response=ConsentOut)
@require("operator")
async def revoke_consent(tenant_id: uuid.UUID, consent_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await scoped_one(session, Consent, scope, Consent.id == consent_id, lock=True)
        if row.revoked_at is None:  # revoking twice keeps the first time: that is when it stopped
            row.revoked_at = datetime.now(UTC)
            audit.record(session, "consent.revoke", "consent", row.id, kind=row.kind)
        return _out(row)

    return json_response(await run_transaction(sessions(), work, scope=scope))
