"""The eval gate as the control API enforces it (issue 12), and the agent snapshots it guards (issue 10).

A *configuration* is what decides how an agent behaves on a call: its behaviour fields (vertical,
persona, voice, providers, tools, flows, compliance) and its knowledge documents. Its hash (SHA-256
of canonical JSON) names it; secret provider options are left out of the hash, so rotating an API
key is not a new configuration. Changing an agent's providers or publishing a version needs a passing
eval run recorded for the resulting hash (`POST .../eval-runs`), else a 409 naming the hash; an
owner may override with a reason, which is written to the audit log (action `gate_override`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import current_auth
from control.api.problems import ApiProblem
from control.api.secret_options import is_secret
from control.auditlog.writer import VIA_API
from control.db.models import Agent, AgentEvalRun, AgentVersion, AuditLog, KnowledgeDocument
from control.db.tenancy import TenantScope, scoped_select

# The fields a published version freezes (providers as stored: sealed secrets stay sealed).
BEHAVIOUR_FIELDS: Final = ("vertical", "persona", "voice", "providers", "tools", "flows", "compliance")
GATE_OVERRIDE: Final = "gate_override"
OVERRIDE_ROLE: Final = "owner"


def _secret_free(providers: Any) -> Any:
    """Providers without their secret options (a key's value or presence is not behaviour), and
    without unset settings (a null model or empty options reads the same as one left out)."""
    if not isinstance(providers, Mapping):
        return providers
    out: dict[str, Any] = {}
    for role, ref in providers.items():
        if isinstance(ref, Mapping):
            options = ref.get("options") if isinstance(ref.get("options"), Mapping) else {}
            kept = {k: v for k, v in options.items() if not is_secret(str(k))}
            ref = {k: v for k, v in {**ref, "options": kept}.items() if v not in (None, {})}
        if ref is not None:
            out[role] = ref
    return out


async def knowledge_refs(session: AsyncSession, scope: TenantScope,
                         agent_id: uuid.UUID) -> list[dict[str, str]]:
    """The agent's knowledge documents, by id and content hash, in a stable order."""
    rows = await session.execute(
        scoped_select(KnowledgeDocument, scope).where(KnowledgeDocument.agent_id == agent_id)
        .with_only_columns(KnowledgeDocument.id, KnowledgeDocument.content_hash)
        .order_by(KnowledgeDocument.id))
    return [{"id": str(doc_id), "content_hash": content_hash} for doc_id, content_hash in rows.all()]


def snapshot_of(agent: Agent, knowledge: list[dict[str, str]]) -> dict[str, Any]:
    snap = {name: getattr(agent, name) for name in BEHAVIOUR_FIELDS}
    snap["knowledge"] = knowledge
    return json.loads(json.dumps(snap))  # a detached copy: later edits of the draft cannot reach it


def config_hash(snapshot: Mapping[str, Any]) -> str:
    plain = {**snapshot, "providers": _secret_free(snapshot.get("providers"))}
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _has_passing_run(session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID,
                           digest: str) -> bool:
    stmt = (scoped_select(AgentEvalRun, scope)
            .where(AgentEvalRun.agent_id == agent_id, AgentEvalRun.config_hash == digest,
                   AgentEvalRun.passed.is_(True))
            .with_only_columns(AgentEvalRun.id).limit(1))
    return await session.scalar(stmt) is not None


async def enforce_gate(session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID, digest: str, *,
                       change: str, override_reason: str | None) -> str:
    """Lets the change through when a passing run is recorded for `digest` ("eval_run"), or when an
    owner overrides (audited, in the same transaction; "override"); otherwise 409 (403 for an override
    by anyone but an owner)."""
    if await _has_passing_run(session, scope, agent_id, digest):
        return "eval_run"
    if override_reason is None:
        raise ApiProblem(
            409, "Conflict",
            f"No passing eval run is recorded for configuration {digest}; run `autospeak eval gate` on this "
            "configuration and record it with POST .../eval-runs, or (owner only) give override_reason.",
            slug="eval-gate", config_hash=digest, change=change)
    auth = current_auth()
    if auth.role != OVERRIDE_ROLE:
        raise ApiProblem(403, "Forbidden", "Only an owner may override the eval gate.",
                         slug="gate-override-forbidden", config_hash=digest)
    session.add(scope.new(
        AuditLog, actor=f"token:{auth.token_id}", actor_role=auth.role, via=VIA_API, source=None,
        action=GATE_OVERRIDE, target_type="agent", target_id=str(agent_id),
        details={"config_hash": digest, "change": change, "reason": override_reason},
        created_at=datetime.now(UTC)))
    return "override"


async def latest_version(session: AsyncSession, scope: TenantScope,
                         agent_id: uuid.UUID) -> AgentVersion | None:
    """The agent's newest published version row (None when it was never published)."""
    stmt = (scoped_select(AgentVersion, scope).where(AgentVersion.agent_id == agent_id)
            .order_by(AgentVersion.version.desc()).limit(1))
    return await session.scalar(stmt)


__all__ = ["BEHAVIOUR_FIELDS", "GATE_OVERRIDE", "config_hash", "enforce_gate", "knowledge_refs",
           "latest_version", "snapshot_of"]
