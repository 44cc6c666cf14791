"""Phone numbers of a tenant, in the global number directory (the voice webhook routes calls by it).

`phone_numbers` is a Global table, so the session's tenant guard does not filter it: every statement
here names `tenant_id` itself. A number is served by the cell of its country calling code, and a
tenant may only hold numbers its home cell serves (calls to it must land where its data lives).
"""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint, Response
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from control.api import audit
from control.api.auth import current_auth, require
from control.api.idempotency import idempotent_create
from control.api.openapi import operation
from control.api.problems import ApiProblem, validation_problem
from control.api.routes.common import TENANT_PREFIX, fetch_page, json_response, outcome_response
from control.api.routes.params import PAGE, not_found, read_page
from control.api.schemas import parse_body
from control.api.schemas_directory import (
    PhoneNumberCreate,
    PhoneNumberList,
    PhoneNumberOut,
    PhoneNumberUpdate,
)
from control.api.state import sessions
from control.db.models import Agent, PhoneNumber
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select
from regions.catalogue import RegionError, UnservedNumberError, region_for_number, validate_e164

bp = Blueprint("numbers", __name__, url_prefix=TENANT_PREFIX)


def _out(row: PhoneNumber) -> dict[str, Any]:
    return PhoneNumberOut.model_validate(row).model_dump(mode="json")


def _own(scope: TenantScope, e164: str) -> Any:
    return select(PhoneNumber).where(PhoneNumber.e164 == e164, PhoneNumber.tenant_id == scope.tenant_id)


async def check_agent(session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID | None,
                      path: str = "agent_id") -> None:
    """A referenced agent must be one of the tenant's: 422 otherwise (the same for another tenant's)."""
    if agent_id is None:
        return
    # A share lock: an agent being deleted is locked for update, so this waits for that delete and then
    # finds nothing, instead of pointing a number at an agent that is about to disappear.
    found = await session.scalar(scoped_select(Agent, scope).where(Agent.id == agent_id)
                                 .with_for_update(read=True))
    if found is None:
        raise validation_problem([{"path": path, "message": "no such agent", "code": "not_found"}])


def _path_number(e164: str) -> str:
    # A malformed number in the path names no resource: 404, like any unknown id.
    try:
        return validate_e164(e164)
    except RegionError:
        raise not_found() from None


@operation(bp, "POST", "/phone-numbers", summary="Add a phone number (served by the tenant's home cell)",
           status=201, body=PhoneNumberCreate, response=PhoneNumberOut, idempotent_create=True)
@require("admin")
async def create_number(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(PhoneNumberCreate)
    scope = current_auth().scope
    try:
        region = region_for_number(spec.e164)
    except RegionError as exc:
        code = "unserved_number" if isinstance(exc, UnservedNumberError) else "invalid_number"
        raise validation_problem([{"path": "e164", "message": str(exc), "code": code}]) from None
    if region.code != scope.region:
        raise ApiProblem(422, "Unprocessable content",
                         f"{spec.e164} is served by the {region.code} cell ({region.name}); this tenant's "
                         f"data lives in {scope.region}, so it can only hold numbers that cell serves.",
                         slug="number-region-mismatch", number_region=region.code, home_region=scope.region,
                         errors=[{"path": "e164", "message": f"served by the {region.code} cell",
                                  "code": "region_mismatch"}])

    async def create(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        await check_agent(session, scope, spec.agent_id)
        # ON CONFLICT DO NOTHING: a race between two tenants for one number gives one winner, no error.
        inserted = await session.scalar(
            pg_insert(PhoneNumber)
            .values(e164=spec.e164, region=region.code, tenant_id=scope.tenant_id, agent_id=spec.agent_id)
            .on_conflict_do_nothing(index_elements=["e164"])
            .returning(PhoneNumber.e164))
        if inserted is None:
            # Same answer whoever holds it, so the directory cannot be probed for other tenants' numbers.
            raise ApiProblem(409, "Conflict", "This number is already registered.", slug="number-taken")
        audit.record(session, "phone_number.create", "phone_number", spec.e164,
                     agent_id=str(spec.agent_id) if spec.agent_id else None)
        return 201, {"e164": spec.e164, "region": region.code,
                     "agent_id": str(spec.agent_id) if spec.agent_id else None}

    outcome = await idempotent_create(scope, spec.model_dump(mode="json"), create)
    return outcome_response(outcome, location=f"/v1/tenants/{tenant_id}/phone-numbers/{spec.e164}")


@operation(bp, "GET", "/phone-numbers", summary="List phone numbers", response=PhoneNumberList, query=PAGE)
@require("viewer")
async def list_numbers(tenant_id: uuid.UUID) -> Response:
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> PhoneNumberList:
        stmt = (select(PhoneNumber).where(PhoneNumber.tenant_id == scope.tenant_id)
                .order_by(PhoneNumber.e164))
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return PhoneNumberList(items=[PhoneNumberOut.model_validate(r) for r in rows],
                               next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/phone-numbers/<e164>", summary="Get a phone number", response=PhoneNumberOut)
@require("viewer")
async def get_number(tenant_id: uuid.UUID, e164: str) -> Response:
    scope = current_auth().scope
    number = _path_number(e164)

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await session.scalar(_own(scope, number))
        if row is None:
            raise not_found()
        return _out(row)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "PATCH", "/phone-numbers/<e164>", summary="Point a phone number at an agent",
           body=PhoneNumberUpdate, response=PhoneNumberOut)
@require("operator")
async def update_number(tenant_id: uuid.UUID, e164: str) -> Response:
    change = await parse_body(PhoneNumberUpdate)
    scope = current_auth().scope
    number = _path_number(e164)

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await session.scalar(_own(scope, number).with_for_update())
        if row is None:
            raise not_found()
        await check_agent(session, scope, change.agent_id)
        before = row.agent_id
        row.agent_id = change.agent_id
        audit.record(session, "phone_number.update", "phone_number", number,
                     agent_id=str(change.agent_id) if change.agent_id else None,
                     previous_agent_id=str(before) if before else None)
        return _out(row)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "DELETE", "/phone-numbers/<e164>", summary="Release a phone number", status=204)
@require("admin")
async def delete_number(tenant_id: uuid.UUID, e164: str) -> Response:
    scope = current_auth().scope
    number = _path_number(e164)

    async def work(session: AsyncSession) -> None:
        result = await session.execute(delete(PhoneNumber).where(PhoneNumber.e164 == number,
                                                                 PhoneNumber.tenant_id == scope.tenant_id))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise not_found()
        audit.record(session, "phone_number.delete", "phone_number", number)

    await run_transaction(sessions(), work, scope=scope)
    return Response("", status=204)
