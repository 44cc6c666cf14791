"""Agents: persona, voice, providers, tools, flows and compliance settings of one tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import current_auth, require
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
from control.api.routes.params import PAGE, not_found, read_page
from control.api.schemas import AgentCreate, AgentList, AgentOut, AgentUpdate, parse_body
from control.api.state import sessions
from control.db.models import Agent
from control.db.session import run_transaction
from control.db.tenancy import scoped_delete, scoped_select

bp = Blueprint("agents", __name__, url_prefix=TENANT_PREFIX)

def _out(agent: Agent) -> dict[str, Any]:
    return AgentOut.model_validate(agent).model_dump(mode="json")


@operation(bp, "POST", "/agents", summary="Create an agent", status=201, body=AgentCreate,
           response=AgentOut, idempotent_create=True)
@require("admin")
async def create_agent(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(AgentCreate)
    scope = current_auth().scope
    values = spec.model_dump(mode="json")

    async def create(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        now = datetime.now(UTC)
        agent = scope.new(Agent, id=uuid.uuid4(), created_at=now, updated_at=now, **values)
        session.add(agent)
        await session.flush()
        return 201, _out(agent)

    outcome = await idempotent_create(scope, values, create)
    return outcome_response(outcome, location=f"/v1/tenants/{tenant_id}/agents/{outcome.body['id']}")


@operation(bp, "GET", "/agents", summary="List agents", response=AgentList, query=PAGE)
@require("viewer")
async def list_agents(tenant_id: uuid.UUID) -> Response:
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> AgentList:
        stmt = scoped_select(Agent, scope).order_by(Agent.created_at, Agent.id)
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return AgentList(items=[AgentOut.model_validate(a) for a in rows], next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/agents/<uuid:agent_id>", summary="Get an agent", response=AgentOut)
@require("viewer")
async def get_agent(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _out(await scoped_one(session, Agent, scope, Agent.id == agent_id))

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "PATCH", "/agents/<uuid:agent_id>", summary="Update an agent", body=AgentUpdate,
           response=AgentOut)
@require("operator")
async def update_agent(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    change = (await parse_body(AgentUpdate)).model_dump(mode="json", exclude_unset=True)
    # An explicit null would erase a required setting; "unset" is spelled by leaving the field out.
    nulls = [name for name, value in change.items() if value is None]
    if nulls:
        raise ApiProblem(422, "Unprocessable content", f"{nulls[0]}: may not be null", slug="validation",
                         errors=[{"path": n, "message": "may not be null", "code": "null"} for n in nulls])
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        agent = await scoped_one(session, Agent, scope, Agent.id == agent_id)
        for name, value in change.items():
            setattr(agent, name, value)
        agent.updated_at = datetime.now(UTC)
        await session.flush()
        return _out(agent)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "DELETE", "/agents/<uuid:agent_id>", summary="Delete an agent", status=204)
@require("admin")
async def delete_agent(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> int:
        result = await session.execute(scoped_delete(Agent, scope).where(Agent.id == agent_id))
        return result.rowcount  # type: ignore[attr-defined]

    if await run_transaction(sessions(), work, scope=scope) == 0:
        raise not_found()
    return Response("", status=204)
