"""Users of a tenant: the people behind its API tokens. Email is unique per tenant (case-insensitive)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control.api import audit
from control.api.auth import ROLE_RANK, current_auth, require
from control.api.idempotency import idempotent_create
from control.api.openapi import operation
from control.api.problems import ApiProblem
from control.api.routes.common import (
    TENANT_PREFIX,
    fetch_page,
    json_response,
    outcome_response,
    scoped_one,
)
from control.api.routes.params import PAGE, read_page
from control.api.schemas import parse_body
from control.api.schemas_directory import UserCreate, UserList, UserOut
from control.api.state import sessions
from control.db.models import ApiToken, User
from control.db.session import run_transaction
from control.db.tenancy import scoped_select

bp = Blueprint("users", __name__, url_prefix=TENANT_PREFIX)


def _email_taken() -> ApiProblem:
    return ApiProblem(409, "Conflict", "A user with this email exists already.", slug="email-taken")


@operation(bp, "POST", "/users", summary="Create a user", status=201, body=UserCreate, response=UserOut,
           idempotent_create=True)
@require("admin")
async def create_user(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(UserCreate)
    scope = current_auth().scope

    async def create(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        taken = await session.scalar(scoped_select(User, scope).where(User.email == spec.email))
        if taken is not None:
            raise _email_taken()
        user = scope.new(User, id=uuid.uuid4(), email=spec.email, name=spec.name,
                         created_at=datetime.now(UTC))
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:  # a concurrent create with the same email won the unique index
            raise _email_taken() from None
        audit.record(session, "user.create", "user", user.id)
        return 201, UserOut.model_validate(user).model_dump(mode="json")

    outcome = await idempotent_create(scope, spec.model_dump(mode="json"), create)
    return outcome_response(outcome, location=f"/v1/tenants/{tenant_id}/users/{outcome.body['id']}")


@operation(bp, "GET", "/users", summary="List users", response=UserList, query=PAGE)
@require("viewer")
async def list_users(tenant_id: uuid.UUID) -> Response:
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> UserList:
        stmt = scoped_select(User, scope).order_by(User.created_at, User.id)
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return UserList(items=[UserOut.model_validate(u) for u in rows], next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/users/<uuid:user_id>", summary="Get a user", response=UserOut)
@require("viewer")
async def get_user(tenant_id: uuid.UUID, user_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> UserOut:
        return UserOut.model_validate(await scoped_one(session, User, scope, User.id == user_id))

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "DELETE", "/users/<uuid:user_id>", summary="Delete a user and revoke their API tokens",
           status=204)
@require("admin")
async def delete_user(tenant_id: uuid.UUID, user_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> None:
        user = await scoped_one(session, User, scope, User.id == user_id, lock=True)
        # A deleted person's tokens must stop working; they are kept (revoked, detached) for the record.
        now = datetime.now(UTC)
        held = scoped_select(ApiToken, scope).where(ApiToken.user_id == user_id)
        tokens = list(await session.scalars(held))
        if any(t.revoked_at is None and ROLE_RANK[t.role] > ROLE_RANK[current_auth().role] for t in tokens):
            # As for tokens: an admin may not disarm an owner, here by deleting the person behind it.
            raise ApiProblem(403, "Forbidden", "Only an owner can delete a user holding an owner token.",
                             slug="forbidden")
        for token in tokens:
            token.revoked_at = token.revoked_at or now
            token.user_id = None
        await session.flush()  # detach before the delete, which the tokens' foreign key would block
        await session.delete(user)
        audit.record(session, "user.delete", "user", user_id, revoked_tokens=[str(t.id) for t in tokens])

    await run_transaction(sessions(), work, scope=scope)
    return Response("", status=204)
