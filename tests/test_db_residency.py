"""Residency, integrity and tenant scoping on a real embedded PostgreSQL with the migrated schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
from db_fixtures import Database, embedded_database
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.base import EMBEDDING_DIM
from control.db.migrate import upgrade
from control.db.models import (
    Agent,
    Call,
    CallEvent,
    KnowledgeChunk,
    KnowledgeDocument,
    Plan,
    Tenant,
    UsageRecord,
    WebhookDelivery,
    WebhookEndpoint,
)
from control.db.session import SERIALIZATION_FAILURE, run_transaction, sqlstate_of
from control.db.tenancy import (
    ScopeViolation,
    TenantScope,
    UnscopedQueryError,
    scoped_select,
    scoped_update,
    tenant_session,
    unscoped,
)
from control.db.topology import REGIONS


@pytest.fixture(scope="module")
def db() -> Iterator[Database]:
    with embedded_database() as database:
        database.run(upgrade(database.engine))
        yield database


@pytest.fixture(scope="module")
def scopes(db: Database) -> dict[str, TenantScope]:
    """One tenant homed in each region, plus a second EU tenant ("eu2") for isolation tests."""
    homes = {r: r for r in REGIONS} | {"eu2": "eu"}
    scopes = {label: TenantScope(uuid.uuid4(), region) for label, region in homes.items()}

    async def seed(session: AsyncSession) -> None:
        session.add(Plan(id="starter", name="Starter", monthly_price_cents=0, included_minutes=100,
                         limits={}))
        await session.flush()
        for label, scope in scopes.items():
            session.add(Tenant(id=scope.tenant_id, name=f"tenant {label}", home_region=scope.region,
                               plan="starter"))

    db.run(run_transaction(db.sessions, seed))
    return scopes


async def _new_call(db: Database, scope: TenantScope) -> Call:
    async def work(session: AsyncSession) -> Call:
        agent = scope.new(Agent, name="Reception", persona="friendly")
        session.add(agent)
        await session.flush()
        call = scope.new(Call, agent_id=agent.id, direction="inbound", from_e164="+441234567890",
                         to_e164="+442071234567")
        session.add(call)
        return call

    return await run_transaction(db.sessions, work, scope=scope)


def test_rows_land_in_their_regions_partition(db: Database, scopes: dict[str, TenantScope]) -> None:
    async def check() -> None:
        for scope in scopes.values():
            call = await _new_call(db, scope)

            async def events(session: AsyncSession, call: Call = call, scope: TenantScope = scope) -> None:
                session.add(scope.new(CallEvent, call_id=call.id, event_id=f"{call.id}:1", kind="turn",
                                      occurred_at=datetime.now(UTC)))

            await run_transaction(db.sessions, events, scope=scope)
        async with db.engine.connect() as conn:
            for table in ("agents", "calls", "call_events"):
                sql = f"SELECT tableoid::regclass::text, region FROM {table}"
                rows = (await conn.execute(text(sql))).all()
                assert len(rows) >= len(scopes)
                assert all(partition == f"{table}_{region}" for partition, region in rows), rows
                assert {region for _, region in rows} == set(REGIONS)

    db.run(check())


def test_insert_with_an_unknown_region_fails(db: Database, scopes: dict[str, TenantScope]) -> None:
    with pytest.raises(ValueError):
        TenantScope(uuid.uuid4(), "xx")

    async def raw_insert() -> None:
        async with db.engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO agents (id, region, tenant_id, name, vertical, persona, voice, providers, "
                     "tools, flows, compliance) VALUES (:id, 'xx', :t, 'a', 'reception', '', '{}', '{}', "
                     "'[]', '{}', '{}')"),
                {"id": uuid.uuid4(), "t": scopes["eu"].tenant_id},
            )

    with pytest.raises(DBAPIError, match="no partition of relation") as info:
        db.run(raw_insert())
    assert sqlstate_of(info.value) == "23514"


def test_a_row_cannot_leave_its_tenants_home_region(db: Database, scopes: dict[str, TenantScope]) -> None:
    eu = scopes["eu"]
    misplaced = TenantScope(eu.tenant_id, "us")  # right tenant, wrong region

    async def work(session: AsyncSession) -> None:
        session.add(misplaced.new(Agent, name="stray"))

    with pytest.raises(IntegrityError) as info:
        db.run(run_transaction(db.sessions, work, scope=misplaced))
    assert sqlstate_of(info.value) == "23503"  # the (tenant_id, region) -> tenants(id, home_region) key


def test_vector_similarity_query_on_knowledge_chunks(db: Database, scopes: dict[str, TenantScope]) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(12, EMBEDDING_DIM)).astype(np.float32)
    query = vectors[3] + 0.05 * rng.normal(size=EMBEDDING_DIM).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = list(np.argsort(1 - unit @ (query / np.linalg.norm(query)))[:4])
    scope, other = scopes["in"], scopes["us"]

    async def work(session: AsyncSession) -> list[int]:
        for owner in (scope, other):  # the other tenant gets identical vectors: it must never be returned
            doc = owner.new(KnowledgeDocument, title="menu")
            session.add(doc)
            await session.flush()
            session.add_all(owner.new(KnowledgeChunk, document_id=doc.id, seq=i, text=f"chunk {i}",
                                      embedding=v.tolist()) for i, v in enumerate(vectors))
        await session.flush()
        stmt = (scoped_select(KnowledgeChunk, scope)
                .order_by(KnowledgeChunk.embedding.cosine_distance(query.tolist())).limit(4))
        rows = (await session.scalars(stmt)).all()
        assert {r.tenant_id for r in rows} == {scope.tenant_id}
        return [r.seq for r in rows]

    assert db.run(run_transaction(db.sessions, work)) == expected


def test_usage_ledger_holds_exactly_one_record_per_call(db: Database, scopes: dict[str, TenantScope]) -> None:
    scope = scopes["us"]
    call = db.run(_new_call(db, scope))
    attempts = 0

    async def bill(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        session.add(scope.new(UsageRecord, call_id=call.id, billable_seconds=42))

    db.run(run_transaction(db.sessions, bill, scope=scope))
    with pytest.raises(IntegrityError) as info:
        db.run(run_transaction(db.sessions, bill, scope=scope))
    assert sqlstate_of(info.value) == "23505"
    assert attempts == 2  # a unique violation is final, not retried

    async def count(session: AsyncSession) -> int:
        stmt = select(func.count()).select_from(UsageRecord).where(UsageRecord.call_id == call.id)
        return int(await session.scalar(stmt) or 0)

    assert db.run(run_transaction(db.sessions, count, scope=scope)) == 1


def test_call_events_refuse_a_duplicate_event_id(db: Database, scopes: dict[str, TenantScope]) -> None:
    scope = scopes["eu2"]
    call = db.run(_new_call(db, scope))
    event_id = f"{scope.region}.calls.{scope.tenant_id}.{call.id}.transcript:7"

    def event(kind: str = "transcript") -> CallEvent:
        return scope.new(CallEvent, call_id=call.id, event_id=event_id, kind=kind,
                         payload={"text": "hello"}, occurred_at=datetime.now(UTC))

    async def insert(session: AsyncSession) -> None:
        session.add(event())

    db.run(run_transaction(db.sessions, insert, scope=scope))
    with pytest.raises(IntegrityError):
        db.run(run_transaction(db.sessions, insert, scope=scope))

    async def consume(session: AsyncSession) -> int:
        # How a consumer takes a redelivered message: the insert is skipped, not an error.
        values = {c: getattr(event(), c) for c in ("id", "region", "tenant_id", "call_id", "event_id",
                                                   "kind", "payload", "occurred_at")}
        values["id"] = uuid.uuid4()
        stmt = pg_insert(CallEvent).values(**values).on_conflict_do_nothing(
            index_elements=["region", "event_id"])
        return (await session.execute(stmt)).rowcount

    assert db.run(run_transaction(db.sessions, consume, scope=scope)) == 0


def test_retry_on_a_server_raised_serialization_failure(db: Database) -> None:
    attempts = 0

    async def flaky(session: AsyncSession) -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            await session.execute(text(
                "DO $$ BEGIN RAISE EXCEPTION 'forced conflict' USING ERRCODE = '40001'; END $$"))
        return "done"

    assert db.run(run_transaction(db.sessions, flaky, base_delay=0.001)) == "done"
    assert attempts == 3

    attempts = -100  # never reaches 3: the runner gives up after max_attempts
    with pytest.raises(DBAPIError) as info:
        db.run(run_transaction(db.sessions, flaky, max_attempts=2, base_delay=0.001))
    assert sqlstate_of(info.value) == SERIALIZATION_FAILURE
    assert attempts == -98


def test_retry_on_a_real_serialization_conflict(db: Database, scopes: dict[str, TenantScope]) -> None:
    """Two SERIALIZABLE read-modify-write transactions on one row: one loses, is retried, and no
    update is lost."""
    scope = scopes["in"]

    async def setup(session: AsyncSession) -> uuid.UUID:
        endpoint = scope.new(WebhookEndpoint, url="https://example.test/hook", signing_secret="whsec_x")
        session.add(endpoint)
        await session.flush()
        delivery = scope.new(WebhookDelivery, endpoint_id=endpoint.id, event_id="e1", event_type="call.ended",
                             payload={}, attempts=0)
        session.add(delivery)
        await session.flush()  # assigns the id
        return delivery.id

    delivery_id = db.run(run_transaction(db.sessions, setup, scope=scope))

    async def race() -> list[int]:
        both_read = asyncio.Barrier(2)
        calls: list[int] = []

        async def bump(session: AsyncSession) -> int:
            calls.append(1)
            current = await session.scalar(
                select(WebhookDelivery.attempts).where(WebhookDelivery.id == delivery_id))
            if len(calls) <= 2:
                await both_read.wait()  # first attempts only: both read before either writes
            assert current is not None
            result = await session.execute(
                scoped_update(WebhookDelivery, scope).where(WebhookDelivery.id == delivery_id)
                .values(attempts=current + 1))
            assert result.rowcount == 1
            return current + 1

        results = await asyncio.gather(*(
            run_transaction(db.sessions, bump, scope=scope, isolation_level="SERIALIZABLE", base_delay=0.001)
            for _ in range(2)))
        assert len(calls) == 3  # exactly one transaction was run a second time
        return sorted(results)

    assert db.run(race()) == [1, 2]

    async def final(session: AsyncSession) -> int:
        stmt = select(WebhookDelivery.attempts).where(WebhookDelivery.id == delivery_id)
        return int(await session.scalar(stmt) or 0)

    assert db.run(run_transaction(db.sessions, final, scope=scope)) == 2


def test_tenant_scoping_never_returns_another_tenants_rows(
    db: Database, scopes: dict[str, TenantScope]
) -> None:
    mine, theirs = scopes["eu"], scopes["eu2"]  # same region: only the tenant filter separates them
    db.run(_new_call(db, mine))
    db.run(_new_call(db, theirs))

    async def check() -> None:
        async with db.sessions() as session:
            tenant_session(session, mine)
            implicit = (await session.scalars(select(Call))).all()  # no filter written: the session adds it
            explicit = (await session.scalars(scoped_select(Call, mine))).all()
            joined = (await session.scalars(select(Call).join(Agent, Agent.id == Call.agent_id))).all()
            assert implicit and {c.tenant_id for c in implicit} == {mine.tenant_id}
            assert {c.id for c in explicit} == {c.id for c in implicit} == {c.id for c in joined}
            # Even asking for the other tenant's rows by id returns nothing.
            other_ids = select(Call.id).where(Call.tenant_id == theirs.tenant_id)
            assert (await session.scalars(other_ids)).all() == []
            # A bulk update through the scoped session cannot reach the other tenant.
            await session.execute(update(Call).values(summary="scoped"))
            session.add(theirs.new(Agent, name="intruder"))
            with pytest.raises(ScopeViolation):
                await session.flush()
            await session.rollback()

        async with db.sessions() as session:
            with pytest.raises(UnscopedQueryError):
                await session.scalars(select(Call))
            audit = unscoped(select(Call.tenant_id, Call.summary), "test audit across tenants")
            rows = (await session.execute(audit)).all()
            assert {t for t, _ in rows} >= {mine.tenant_id, theirs.tenant_id}
            assert all(summary is None for _, summary in rows)  # the scoped update was rolled back

        with pytest.raises(ScopeViolation):
            async with db.sessions() as session:
                tenant_session(session, mine)
                tenant_session(session, theirs)

    db.run(check())
    with pytest.raises(TypeError):
        scoped_select(Tenant, mine)  # type: ignore[type-var]
