"""Typed models: the global directory, identity, agents, knowledge, webhooks and bookkeeping.

Call data (calls, turns, events, recordings, usage) lives in `call_models` and is re-exported here,
so `from control.db.models import X` works for every table.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from control.db.base import (
    EMBEDDING_DIM,
    TOKEN_ROLES,
    Base,
    Global,
    Regional,
    regional_args,
    same_region_fk,
    utcnow_column,
)
from control.db.call_models import Call, CallEvent, Recording, Turn, UsageRecord
from control.db.record_models import ToolRecord
from control.db.topology import REGIONS

_REGION_IN = "IN (" + ", ".join(f"'{r}'" for r in REGIONS) + ")"

# --- global directory -------------------------------------------------------------------------


class Plan(Global, Base):
    __tablename__ = "plans"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    monthly_price_cents: Mapped[int] = mapped_column(Integer, default=0)
    included_minutes: Mapped[int] = mapped_column(Integer, default=0)
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Tenant(Global, Base):
    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint(f"home_region {_REGION_IN}", name="home_region"),
        # Target of every regional table's (tenant_id, region) foreign key: a row can only be
        # written in its tenant's home region.
        UniqueConstraint("id", "home_region"),
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    home_region: Mapped[str] = mapped_column(String(8))
    plan: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    created_at: Mapped[datetime] = utcnow_column()


class PhoneNumber(Global, Base):
    __tablename__ = "phone_numbers"
    __table_args__ = (
        CheckConstraint(f"region {_REGION_IN}", name="region"),
        CheckConstraint("e164 ~ '^\\+[1-9][0-9]{6,14}$'", name="e164"),
    )
    e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    region: Mapped[str] = mapped_column(String(8))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    # No foreign key: agents are regional, and a global row must not depend on a regional one.
    agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


# --- identity ---------------------------------------------------------------------------------


class User(Regional, Base):
    __tablename__ = "users"
    __table_args__ = regional_args("users", UniqueConstraint("region", "tenant_id", "email"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = utcnow_column()


class ApiToken(Regional, Base):
    __tablename__ = "api_tokens"
    __table_args__ = regional_args(
        "api_tokens",
        same_region_fk(["user_id"], "users"),
        CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in TOKEN_ROLES) + ")", name="role"),
        UniqueConstraint("region", "token_hash"),
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    name: Mapped[str] = mapped_column(String(120), default="")
    # Only a digest of the secret is stored; `prefix` lets a person recognise the token in lists.
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = utcnow_column()


# --- agents and knowledge ---------------------------------------------------------------------


class Agent(Regional, Base):
    __tablename__ = "agents"
    __table_args__ = regional_args("agents")
    name: Mapped[str] = mapped_column(String(200))
    vertical: Mapped[str] = mapped_column(String(32), default="reception")
    persona: Mapped[str] = mapped_column(Text, default="")
    voice: Mapped[dict[str, Any]] = mapped_column(default=dict)
    providers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tools: Mapped[list[Any]] = mapped_column(default=list)
    flows: Mapped[dict[str, Any]] = mapped_column(default=dict)
    compliance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = utcnow_column()
    updated_at: Mapped[datetime] = utcnow_column()
    # The newest published version (None: never published, calls run the record itself).
    published_version: Mapped[int | None] = mapped_column(Integer)


class AgentVersion(Regional, Base):
    """An immutable published snapshot of an agent's behaviour; a call runs the one it started with."""

    __tablename__ = "agent_versions"
    __table_args__ = regional_args(
        "agent_versions",
        same_region_fk(["agent_id"], "agents", ondelete="CASCADE"),
        UniqueConstraint("region", "tenant_id", "agent_id", "version"),
        CheckConstraint("version >= 1", name="version"),
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    version: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column()
    config_hash: Mapped[str] = mapped_column(String(64))
    gate: Mapped[str] = mapped_column(String(16))  # how it passed the gate: eval_run or override
    created_at: Mapped[datetime] = utcnow_column()


class AgentEvalRun(Regional, Base):
    """A gate verdict (candidate against baseline on the agent's suite) for one configuration hash."""

    __tablename__ = "agent_eval_runs"
    __table_args__ = regional_args(
        "agent_eval_runs",
        same_region_fk(["agent_id"], "agents", ondelete="CASCADE"),
        Index("ix_agent_eval_runs_config", "region", "tenant_id", "agent_id", "config_hash"),
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    config_hash: Mapped[str] = mapped_column(String(64))
    suite: Mapped[str] = mapped_column(String(200))
    passed: Mapped[bool] = mapped_column(Boolean)
    verdict: Mapped[dict[str, Any]] = mapped_column()  # the gate's rows and refusals, the two summaries
    created_at: Mapped[datetime] = utcnow_column()


class KnowledgeDocument(Regional, Base):
    __tablename__ = "knowledge_documents"
    __table_args__ = regional_args(
        "knowledge_documents",
        same_region_fk(["agent_id"], "agents"),
        CheckConstraint("status IN ('queued', 'processing', 'ready', 'failed')", name="status"),
        # Uploads are idempotent per tenant: the same bytes twice are one document.
        UniqueConstraint("region", "tenant_id", "content_hash"),
        Index("ix_knowledge_documents_status", "region", "status"),
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(300))
    source_uri: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(100), default="text/plain")
    created_at: Mapped[datetime] = utcnow_column()
    # The row is also the ingestion job: queued -> processing -> ready | failed (`error` says why).
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    error: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), server_default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    chunk_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    embedding_model: Mapped[str | None] = mapped_column(String(100))
    # The upload's bytes, kept only until the job ends (a restart then resumes the job).
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    updated_at: Mapped[datetime] = utcnow_column()


class KnowledgeChunk(Regional, Base):
    __tablename__ = "knowledge_chunks"
    __table_args__ = regional_args(
        "knowledge_chunks",
        same_region_fk(["document_id"], "knowledge_documents", ondelete="CASCADE"),
        UniqueConstraint("region", "document_id", "seq"),
        # PostgreSQL only (the migration skips it on CockroachDB); cosine distance for embeddings.
        Index(
            "ix_knowledge_chunks_embedding",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        Index("ix_knowledge_chunks_tenant_document", "region", "tenant_id", "document_id"),
    )
    document_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[list[float]] = mapped_column(Vector(EMBEDDING_DIM))
    section: Mapped[str] = mapped_column(Text, default="", server_default="")
    embedding_model: Mapped[str] = mapped_column(String(100), server_default="")


# --- webhooks ---------------------------------------------------------------------------------


class WebhookEndpoint(Regional, Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = regional_args("webhook_endpoints")
    url: Mapped[str] = mapped_column(Text)
    # Standard Webhooks signs with the shared secret, so it must be readable (not hashed).
    signing_secret: Mapped[str] = mapped_column(String(128))
    event_types: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = utcnow_column()


class WebhookDelivery(Regional, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = regional_args(
        "webhook_deliveries",
        same_region_fk(["endpoint_id"], "webhook_endpoints", ondelete="CASCADE"),
        # One delivery row per (endpoint, event); retries update it, so a replayed event sends once.
        UniqueConstraint("region", "endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_due", "region", "status", "next_attempt_at"),
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = utcnow_column()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- bookkeeping ------------------------------------------------------------------------------


class AuditLog(Regional, Base):
    """Append-only (migration 0003 adds a trigger refusing UPDATE and DELETE); see control.auditlog."""

    __tablename__ = "audit_log"
    __table_args__ = regional_args(
        "audit_log", Index("ix_audit_log_tenant_time", "tenant_id", "created_at"),
        Index("ix_audit_log_tenant_action", "region", "tenant_id", "action"),
    )
    actor: Mapped[str] = mapped_column(String(200))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    # Channel: api, agent, platform, system.
    via: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    source: Mapped[str | None] = mapped_column(String(64))  # a network prefix, never a full address
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = utcnow_column()


class RetentionPolicy(Regional, Base):
    """How long a tenant's calls and recordings are kept (days; NULL keeps them); see control.retention."""

    __tablename__ = "retention_policies"
    __table_args__ = regional_args(
        "retention_policies", UniqueConstraint("region", "tenant_id"),
        CheckConstraint("call_days IS NULL OR call_days >= 1", name="call_days"),
        CheckConstraint("recording_days IS NULL OR recording_days >= 1", name="recording_days"),
    )
    call_days: Mapped[int | None] = mapped_column(Integer)
    recording_days: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = utcnow_column()


class Consent(Regional, Base):
    __tablename__ = "consents"
    __table_args__ = regional_args(
        "consents", Index("ix_consents_lookup", "region", "tenant_id", "subject_e164", "kind")
    )
    subject_e164: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))  # outbound_call, recording, voice_clone, ...
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = utcnow_column()
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Regional, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = regional_args(
        "idempotency_keys", UniqueConstraint("region", "tenant_id", "key")
    )
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime] = utcnow_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


__all__ = [
    "Agent", "AgentEvalRun", "AgentVersion", "ApiToken", "AuditLog", "Base", "Call", "CallEvent", "Consent",
    "IdempotencyKey", "KnowledgeChunk", "KnowledgeDocument", "PhoneNumber", "Plan", "Recording",
    "RetentionPolicy",
    "Tenant", "ToolRecord", "Turn", "UsageRecord", "User", "WebhookDelivery", "WebhookEndpoint",
]
