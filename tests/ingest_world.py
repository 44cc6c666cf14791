"""The event-ingest tests' world: an embedded database with a tenant per region and webhook endpoints,
and helpers to build, apply and read back call events."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from db_fixtures import Database, embedded_database
from sqlalchemy.ext.asyncio import AsyncSession

from cells.contract.envelope import CallEventEnvelope
from control.api.auth import bootstrap_tenant
from control.db.migrate import upgrade
from control.db.models import (
    Agent,
    Call,
    CallEvent,
    Recording,
    Turn,
    UsageRecord,
    WebhookDelivery,
    WebhookEndpoint,
)
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select
from control.events import IngestOutcome, ingest_event

T0 = 1_760_000_000.0


@dataclass
class World:
    db: Database
    scopes: dict[str, TenantScope]
    agent_id: uuid.UUID
    all_endpoint: uuid.UUID
    ended_endpoint: uuid.UUID


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@contextmanager
def open_world() -> Iterator[World]:
    """The database with a tenant per region and, in eu, an agent and webhook endpoints."""
    with embedded_database() as db:
        db.run(upgrade(db.engine))
        scopes: dict[str, TenantScope] = {}
        for label, region in (("eu", "eu"), ("in", "in"), ("us", "us")):
            async def make(session: AsyncSession, label: str = label, region: str = region) -> TenantScope:
                tenant, _ = await bootstrap_tenant(session, f"ingest {label}", region)
                return TenantScope(tenant.id, region)

            scopes[label] = db.run(run_transaction(db.sessions, make))
        eu = scopes["eu"]

        async def seed(session: AsyncSession) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
            agent = eu.new(Agent, id=uuid.uuid4(), name="Reception")
            every = eu.new(WebhookEndpoint, id=uuid.uuid4(), url="http://127.0.0.1:9/all",
                           signing_secret=secret(), event_types=[])
            ended = eu.new(WebhookEndpoint, id=uuid.uuid4(), url="http://127.0.0.1:9/ended",
                           signing_secret=secret(), event_types=["call.ended"])
            off = eu.new(WebhookEndpoint, id=uuid.uuid4(), url="http://127.0.0.1:9/off",
                         signing_secret=secret(), event_types=[], enabled=False)
            session.add_all([agent, every, ended, off])
            return agent.id, every.id, ended.id

        agent_id, all_ep, ended_ep = db.run(run_transaction(db.sessions, seed, scope=eu))
        yield World(db, scopes, agent_id, all_ep, ended_ep)


def env(scope: TenantScope, call_id: uuid.UUID, kind: str, event_id: str, data: dict[str, Any] | None = None,
        *, at: float = T0, region: str | None = None, tenant: uuid.UUID | None = None) -> CallEventEnvelope:
    return CallEventEnvelope.new(
        call_id=str(call_id), tenant_id=str(tenant or scope.tenant_id), region=region or scope.region,
        kind=kind, event_id=event_id, data=data or {}, occurred_at=at, source="test",
    )


def ingest(w: World, envelope: CallEventEnvelope, **kw: Any) -> IngestOutcome:
    return w.db.run(ingest_event(w.db.sessions, envelope, **kw))


def rows(w: World, scope: TenantScope, model: type[Any], call_id: uuid.UUID) -> list[Any]:
    async def q(session: AsyncSession) -> list[Any]:
        col = model.id if model is Call else model.call_id
        return list((await session.execute(scoped_select(model, scope).where(col == call_id))).scalars())

    return w.db.run(run_transaction(w.db.sessions, q, scope=scope))


def deliveries(w: World, scope: TenantScope, call_id: uuid.UUID) -> list[WebhookDelivery]:
    async def q(session: AsyncSession) -> list[WebhookDelivery]:
        stmt = scoped_select(WebhookDelivery, scope).order_by(WebhookDelivery.created_at)
        found = (await session.execute(stmt)).scalars()
        return [d for d in found if d.payload["data"]["call_id"] == str(call_id)]

    return w.db.run(run_transaction(w.db.sessions, q, scope=scope))


def snapshot(w: World, scope: TenantScope, call_id: uuid.UUID) -> dict[str, Any]:
    call = rows(w, scope, Call, call_id)[0]
    return {
        "call": (call.status, call.disposition, call.ended_at, call.latency, call.carrier_call_sid),
        "turns": [(t.seq, t.speaker, t.text) for t in rows(w, scope, Turn, call_id)],
        "events": len(rows(w, scope, CallEvent, call_id)),
        "recordings": len(rows(w, scope, Recording, call_id)),
        "usage": [(u.billable_seconds, u.amount_micros) for u in rows(w, scope, UsageRecord, call_id)],
        "deliveries": sorted((d.endpoint_id.hex, d.event_id) for d in deliveries(w, scope, call_id)),
    }


def lifecycle(scope: TenantScope, call_id: uuid.UUID, agent_id: uuid.UUID) -> list[CallEventEnvelope]:
    c, s = str(call_id), "MZstream1"
    timing = {"index": 1, "caller_text": "hello", "agent_text": "hi there", "speech_end": 1.0,
              "ms_after_speech_end": {"first_frame_sent": 420.0, "stt_final": 90.0}}
    return [
        env(scope, call_id, "call_created", f"{c}:created", {
            "direction": "inbound", "from": "+4915112345678", "to": "+442071234567",
            "agent_id": str(agent_id), "call_sid": "CA123", "carrier": "twilio"}),
        env(scope, call_id, "call_started", f"{c}:{s}:1",
            {"call_sid": "CA123", "stream_sid": s, "worker_id": "w1", "resumed": False}, at=T0 + 1),
        env(scope, call_id, "transcript", f"{c}:{s}:2", {"text": "hello", "turn": 1}, at=T0 + 3),
        env(scope, call_id, "transcript", f"{c}:{s}:3", {"text": "uh", "turn": 2, "ignored": True},
            at=T0 + 4),
        env(scope, call_id, "agent_said", f"{c}:{s}:4",
            {"text": "hi there", "interrupted": True, "start_ms": 3500, "end_ms": 4200}, at=T0 + 5),
        env(scope, call_id, "turn", f"{c}:{s}:5", timing, at=T0 + 5),
        env(scope, call_id, "turn", f"{c}:{s}:6",
            {**timing, "index": 2, "ms_after_speech_end": {"first_frame_sent": 780.0}}, at=T0 + 8),
        env(scope, call_id, "tool_call", f"{c}:{s}:7", {"name": "book", "args": {}}, at=T0 + 9),
        env(scope, call_id, "recording_ready", f"{c}:{s}:8", {
            "object_key": f"{scope.tenant_id}/{c}.wav", "duration_ms": 12300, "size_bytes": 196_800,
            "content_type": "audio/wav"}, at=T0 + 12),
        env(scope, call_id, "call_ended", f"{c}:{s}:9",
            {"disposition": "booked", "turns": 2, "duration_s": 12.3}, at=T0 + 12.3),
    ]
