"""API tokens of a tenant: create (secret shown once), list, revoke.

An admin may mint and revoke tokens up to admin; only an owner touches owner tokens, so an admin
cannot promote itself.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Blueprint, Response
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import ROLE_RANK, current_auth, make_token_row, require
from control.api.idempotency import idempotent_create
from control.api.openapi import operation
from control.api.problems import ApiProblem
from control.api.routes.common import TENANT_PREFIX, json_response, outcome_response
from control.api.schemas import TokenCreate, TokenCreated, TokenList, TokenOut, parse_body
from control.api.state import api_state, sessions
from control.db.models import ApiToken
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select

bp = Blueprint("tokens", __name__, url_prefix=TENANT_PREFIX)


def _check_can_manage(role: str) -> None:
    if ROLE_RANK[role] > ROLE_RANK[current_auth().role]:
        raise ApiProblem(403, "Forbidden", f"Only an owner can manage {role} tokens.", slug="forbidden")


@operation(bp, "POST", "/tokens", summary="Create an API token (the secret is shown once)", status=201,
           body=TokenCreate, response=TokenCreated, idempotent_create=True)
@require("admin")
async def create_token(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(TokenCreate)
    _check_can_manage(spec.role)
    scope = current_auth().scope
    ttl = (timedelta(days=spec.expires_in_days) if spec.expires_in_days is not None
           else api_state().settings.default_token_ttl)

    async def create(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        row, plaintext = make_token_row(scope, spec.role, name=spec.name, ttl=ttl)
        row.id = uuid.uuid4()
        session.add(row)
        await session.flush()
        out = TokenCreated.model_validate({**TokenOut.model_validate(row).model_dump(), "token": plaintext})
        return 201, out.model_dump(mode="json")

    # The secret is not kept in the idempotency record: a replay shows the token without it.
    outcome = await idempotent_create(scope, spec.model_dump(mode="json"), create, redact=("token",))
    return outcome_response(outcome)


@operation(bp, "GET", "/tokens", summary="List API tokens (no secrets)", response=TokenList)
@require("admin")
async def list_tokens(tenant_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> TokenList:
        stmt = scoped_select(ApiToken, scope).order_by(ApiToken.created_at, ApiToken.id)
        rows = await session.scalars(stmt)
        return TokenList(items=[TokenOut.model_validate(r) for r in rows])

    return json_response(await run_transaction(sessions(), work, scope=scope))


async def _other_owner(session: AsyncSession, scope: TenantScope, token_id: uuid.UUID, now: datetime) -> bool:
    """Another owner token that still works. The tenant's owner tokens are locked first, so that two
    revocations at once cannot each leave the other as the last one and both go through."""
    stmt = (scoped_select(ApiToken, scope)
            .where(ApiToken.role == "owner", ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.id).with_for_update())
    owners = (await session.scalars(stmt)).all()
    return any(t.id != token_id and (t.expires_at is None or _aware(t.expires_at) > now) for t in owners)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@operation(bp, "DELETE", "/tokens/<uuid:token_id>", summary="Revoke an API token", status=204,
           errors=(409,))
@require("admin")
async def revoke_token(tenant_id: uuid.UUID, token_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> None:
        row = await session.scalar(scoped_select(ApiToken, scope).where(ApiToken.id == token_id))
        if row is None:
            raise ApiProblem(404, "Not Found", "No such resource.", slug="not-found")
        _check_can_manage(row.role)
        if row.revoked_at is None:
            now = datetime.now(UTC)
            if row.role == "owner" and not await _other_owner(session, scope, row.id, now):
                raise ApiProblem(409, "Conflict", "This is the tenant's last active owner token: create "
                                 "another owner token before revoking it.", slug="last-owner-token")
            row.revoked_at = now

    await run_transaction(sessions(), work, scope=scope)
    return Response("", status=204)
