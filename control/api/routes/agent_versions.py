"""Published agent versions and the eval runs that gate them (issues 10 and 12).

A version is an immutable snapshot of the agent's behaviour at publication; calls run the newest
published version at their start (the record itself while none is published) and keep it to their
end. Publishing needs a passing eval run recorded for the snapshot's configuration hash, or an owner's
override (control/api/agent_gate.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.agent_gate import config_hash, enforce_gate, knowledge_refs, snapshot_of
from control.api.auth import current_auth, require
from control.api.openapi import operation
from control.api.problems import ApiProblem
from control.api.routes.common import TENANT_PREFIX, fetch_page, json_response, scoped_one
from control.api.routes.params import PAGE, read_page
from control.api.schemas import parse_body
from control.api.schemas_versions import (
    EvalRunCreate,
    EvalRunList,
    EvalRunOut,
    VersionList,
    VersionOut,
    VersionPublish,
)
from control.api.secret_options import mask_providers
from control.api.state import sessions
from control.db.models import Agent, AgentEvalRun, AgentVersion
from control.db.session import run_transaction
from control.db.tenancy import scoped_select
from evals.bench.gate import compare, parse_margins

bp = Blueprint("agent_versions", __name__, url_prefix=TENANT_PREFIX)
_AGENT = "/agents/<uuid:agent_id>"


def _version_out(row: AgentVersion) -> dict[str, Any]:
    out = VersionOut.model_validate(row).model_dump(mode="json")
    out["snapshot"]["providers"] = mask_providers(out["snapshot"].get("providers"))  # secrets write-only
    return out


_PUBLISH_NOTES = (
    "Freezes the agent's behaviour (vertical, persona, voice, providers, tools, flows, compliance and "
    "its knowledge documents) as version N+1. Needs a passing eval run recorded for that configuration's "
    "hash (POST .../eval-runs); otherwise 409 `eval-gate` with `config_hash`. An owner may publish "
    "anyway with `override_reason` (audited as `gate_override`); anyone else giving it gets 403. "
    "Send `{}` as the body when there is no reason to give.")


@operation(bp, "POST", f"{_AGENT}/versions", summary="Publish the agent as a new version", status=201,
           body=VersionPublish, response=VersionOut, errors=(403, 409), description=_PUBLISH_NOTES)
@require("operator")
async def publish_version(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    spec = await parse_body(VersionPublish)
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        # Locked: two publications at once get consecutive numbers, not the same one.
        agent = await scoped_one(session, Agent, scope, Agent.id == agent_id, lock=True)
        snapshot = snapshot_of(agent, await knowledge_refs(session, scope, agent_id))
        digest = config_hash(snapshot)
        gate = await enforce_gate(session, scope, agent_id, digest, change="publish",
                                  override_reason=spec.override_reason)
        number = (agent.published_version or 0) + 1
        row = scope.new(AgentVersion, id=uuid.uuid4(), agent_id=agent_id, version=number, snapshot=snapshot,
                        config_hash=digest, gate=gate, created_at=datetime.now(UTC))
        session.add(row)
        agent.published_version = number
        await session.flush()
        return _version_out(row)

    body = await run_transaction(sessions(), work, scope=scope)
    return json_response(body, 201, {"Location": f"/v1/tenants/{tenant_id}/agents/{agent_id}/versions/"
                                                 f"{body['version']}"})


@operation(bp, "GET", f"{_AGENT}/versions", summary="List the agent's published versions",
           response=VersionList, query=PAGE)
@require("viewer")
async def list_versions(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> VersionList:
        await scoped_one(session, Agent, scope, Agent.id == agent_id)  # 404 for another tenant's agent
        stmt = (scoped_select(AgentVersion, scope).where(AgentVersion.agent_id == agent_id)
                .order_by(AgentVersion.version))
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return VersionList(items=[VersionOut.model_validate(_version_out(r)) for r in rows],
                           next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


_EVAL_NOTES = (
    "Records the gate's verdict for one configuration hash: the body carries both JSON reports of "
    "`autospeak eval run` (baseline and candidate) and the API runs `autospeak eval gate`'s comparison "
    "on them. A refused comparison is recorded too (passed false) but opens no gate. 422 when the reports "
    "cannot be compared (different suites, missing figures).")


def _verdict(body: EvalRunCreate) -> tuple[str, bool, dict[str, Any]]:
    try:
        rows, refused = compare(body.baseline, body.candidate, parse_margins(body.margins))
        suite = str(body.candidate.get("suite") or "")[:200]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        detail = f"the reports cannot be compared: {exc}"
        errors = [{"path": "candidate", "message": detail, "code": "not_comparable"}]
        raise ApiProblem(422, "Unprocessable content", detail, slug="validation", errors=errors) from None
    verdict = {"rows": [list(r) for r in rows], "refused": refused,
               "baseline_summary": body.baseline.get("summary"),
               "candidate_summary": body.candidate.get("summary"),
               "margins": body.margins}
    return suite, not refused, verdict


@operation(bp, "POST", f"{_AGENT}/eval-runs", summary="Record an eval gate run for a configuration",
           status=201, body=EvalRunCreate, response=EvalRunOut, description=_EVAL_NOTES)
@require("operator")
async def record_eval_run(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    body = await parse_body(EvalRunCreate)
    suite, passed, verdict = _verdict(body)
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        await scoped_one(session, Agent, scope, Agent.id == agent_id)
        row = scope.new(AgentEvalRun, id=uuid.uuid4(), agent_id=agent_id, config_hash=body.config_hash,
                        suite=suite, passed=passed, verdict=verdict, created_at=datetime.now(UTC))
        session.add(row)
        await session.flush()
        return EvalRunOut.model_validate(row).model_dump(mode="json")

    return json_response(await run_transaction(sessions(), work, scope=scope), 201)


@operation(bp, "GET", f"{_AGENT}/eval-runs", summary="List the agent's recorded eval runs",
           response=EvalRunList, query=PAGE)
@require("viewer")
async def list_eval_runs(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Response:
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> EvalRunList:
        await scoped_one(session, Agent, scope, Agent.id == agent_id)
        stmt = (scoped_select(AgentEvalRun, scope).where(AgentEvalRun.agent_id == agent_id)
                .order_by(AgentEvalRun.created_at, AgentEvalRun.id))
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return EvalRunList(items=[EvalRunOut.model_validate(r) for r in rows], next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))
