"""Agents: persona, voice, providers, tools, flows and compliance settings of one tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.agent_gate import config_hash, enforce_gate, knowledge_refs, snapshot_of
from control.api.auth import current_auth, require
from control.api.idempotency import idempotent_create
from control.api.openapi import operation
from control.api.problems import FOREIGN_KEY_VIOLATION, ApiProblem
from control.api.routes.common import (
    TENANT_PREFIX,
    fetch_page,
    json_response,
    outcome_response,
    scoped_one,
)
from control.api.routes.params import PAGE, read_page
from control.api.schemas import AgentCreate, AgentList, AgentOut, AgentUpdate, check_agent_runs, parse_body
from control.api.sealing import seal_providers
from control.api.secret_options import mask_providers, merge_providers
from control.api.state import api_state, sessions
from control.db.models import Agent, Call, KnowledgeDocument, PhoneNumber
from control.db.session import run_transaction, sqlstate_of
from control.db.tenancy import TenantScope, scoped_delete, scoped_select

bp = Blueprint("agents", __name__, url_prefix=TENANT_PREFIX)
_LISTED = 20  # numbers named in a refusal

def _sealed(providers: Any, scope: TenantScope) -> Any:
    """Secret provider options sealed at rest with the region's key (when the cell has one)."""
    return seal_providers(providers, api_state().settings.secrets_key, str(scope.tenant_id))


def _out(agent: Agent) -> dict[str, Any]:
    out = AgentOut.model_validate(agent).model_dump(mode="json")
    out["providers"] = mask_providers(out["providers"])  # secret options are write-only
    return out


@operation(bp, "POST", "/agents", summary="Create an agent", status=201, body=AgentCreate,
           response=AgentOut, idempotent_create=True)
@require("admin")
async def create_agent(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(AgentCreate)
    scope = current_auth().scope
    values = spec.model_dump(mode="json")

    async def create(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        now = datetime.now(UTC)
        stored = {**values, "providers": _sealed(values["providers"], scope)}
        agent = scope.new(Agent, id=uuid.uuid4(), created_at=now, updated_at=now, **stored)
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
        return AgentList(items=[AgentOut.model_validate(_out(a)) for a in rows], next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/agents/<uuid:agent_id>", summary="Get an agent", response=AgentOut)
@require("viewer")
async def get_agent(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _out(await scoped_one(session, Agent, scope, Agent.id == agent_id))

    return json_response(await run_transaction(sessions(), work, scope=scope))


_UPDATE_NOTES = (
    "Changing `providers` (other than secret options) needs a passing eval run recorded for the resulting "
    "configuration (POST .../eval-runs); otherwise 409 `eval-gate` naming `config_hash`, and nothing "
    "changes. An owner may give `override_reason` (audited as `gate_override`); anyone else gets 403.")


@operation(bp, "PATCH", "/agents/<uuid:agent_id>", summary="Update an agent", body=AgentUpdate,
           response=AgentOut, errors=(403, 409), description=_UPDATE_NOTES)
@require("operator")
async def update_agent(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    change = (await parse_body(AgentUpdate)).model_dump(mode="json", exclude_unset=True)
    override_reason = change.pop("override_reason", None)
    # An explicit null would erase a required setting; "unset" is spelled by leaving the field out.
    nulls = [name for name, value in change.items() if value is None]
    if nulls:
        raise ApiProblem(422, "Unprocessable content", f"{nulls[0]}: may not be null", slug="validation",
                         errors=[{"path": n, "message": "may not be null", "code": "null"} for n in nulls])
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        agent = await scoped_one(session, Agent, scope, Agent.id == agent_id, lock=True)
        providers_before = config_hash({"providers": agent.providers})
        for name, value in change.items():
            if name == "providers":
                value = _sealed(merge_providers(agent.providers, value), scope)
            setattr(agent, name, value)
        if {"vertical", "flows", "tools"} & set(change):  # the merged record must still run
            try:
                check_agent_runs(agent.vertical, agent.flows, agent.tools)
            except ValueError as exc:
                raise ApiProblem(422, "Unprocessable content", str(exc), slug="validation",
                                 errors=[{"path": "flows", "message": str(exc), "code": "agent_cannot_run"}]
                                 ) from None
        if "providers" in change and config_hash({"providers": agent.providers}) != providers_before:
            # The eval gate: the resulting configuration needs a passing run (or an owner's override).
            snapshot = snapshot_of(agent, await knowledge_refs(session, scope, agent_id))
            await enforce_gate(session, scope, agent_id, config_hash(snapshot), change="providers",
                               override_reason=override_reason)
        agent.updated_at = datetime.now(UTC)
        await session.flush()
        return _out(agent)

    return json_response(await run_transaction(sessions(), work, scope=scope))


_DELETE_NOTES = (
    "Refused with 409 while anything still refers to the agent, and nothing is deleted: phone numbers "
    "pointing at it (`agent-has-numbers`: point them at another agent or detach them with "
    "`PATCH /phone-numbers/{e164}` and `agent_id: null` first), calls on record "
    "(`agent-has-calls`: call records keep naming their agent, so keep the agent; detaching its numbers "
    "stops it taking calls) or knowledge documents (`agent-has-knowledge`)."
)


def _in_use(slug: str, detail: str, **extensions: Any) -> ApiProblem:
    return ApiProblem(409, "Conflict", detail, slug=slug, **extensions)


async def _check_unreferenced(session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID) -> None:
    """409 if anything refers to the agent: a number (no foreign key: it would dangle, and callers
    would hear that no agent is free) or a call or document (a foreign key: the delete would fail)."""
    numbers = list(await session.scalars(
        select(PhoneNumber.e164)
        .where(PhoneNumber.tenant_id == scope.tenant_id, PhoneNumber.agent_id == agent_id)
        .order_by(PhoneNumber.e164).limit(_LISTED + 1)))
    if numbers:
        shown = ", ".join(numbers[:_LISTED]) + (", ..." if len(numbers) > _LISTED else "")
        raise _in_use("agent-has-numbers", f"Phone numbers still point at this agent ({shown}). Point them "
                      "at another agent or detach them (PATCH the number with agent_id null) first.",
                      phone_numbers=numbers[:_LISTED])
    called = await session.scalar(scoped_select(Call, scope).where(Call.agent_id == agent_id)
                                  .with_only_columns(Call.id).limit(1))
    if called is not None:
        raise _in_use("agent-has-calls", "This agent has calls on record, which keep referring to it, so it "
                      "cannot be deleted. Keep it; detaching its phone numbers stops it taking calls.")
    documented = await session.scalar(scoped_select(KnowledgeDocument, scope)
                                      .where(KnowledgeDocument.agent_id == agent_id)
                                      .with_only_columns(KnowledgeDocument.id).limit(1))
    if documented is not None:
        raise _in_use("agent-has-knowledge", "Knowledge documents still belong to this agent; delete them "
                      "first.")


@operation(bp, "DELETE", "/agents/<uuid:agent_id>", summary="Delete an agent", status=204, errors=(409,),
           description=_DELETE_NOTES)
@require("admin")
async def delete_agent(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> None:
        # Locked first: a number pointed at it meanwhile (check_agent takes a share lock) waits for this
        # transaction and then finds no agent; a call inserted meanwhile waits on its foreign key.
        await scoped_one(session, Agent, scope, Agent.id == agent_id, lock=True)
        await _check_unreferenced(session, scope, agent_id)
        try:
            await session.execute(scoped_delete(Agent, scope).where(Agent.id == agent_id))
        except IntegrityError as exc:
            # A reference this transaction could not see (a concurrent call on CockroachDB): same answer.
            if sqlstate_of(exc) != FOREIGN_KEY_VIOLATION:
                raise
            conflict = _in_use("agent-in-use", "Other records still refer to this agent; it was not deleted.")
            raise conflict from None

    await run_transaction(sessions(), work, scope=scope)
    return Response("", status=204)
