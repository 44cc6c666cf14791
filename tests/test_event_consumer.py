"""The control plane's durable JetStream consumers on real nats-servers and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import pytest
from db_fixtures import Database, embedded_database
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.contract.envelope import CallEventEnvelope
from cells.contract.jetstream import call_stream_name, call_subject, ensure_call_stream, publish_event
from cells.launcher.nats import NatsSupercluster
from control.api.auth import bootstrap_tenant
from control.db.migrate import upgrade
from control.db.models import Call, CallEvent, Turn, UsageRecord, WebhookEndpoint
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, unscoped
from control.events import EventConsumer, IngestOutcome, IngestResult, apply_event, durable_name, ingest_event

T = TypeVar("T")
REGIONS = ("eu", "in", "us")
TRANSCRIPTS = 3  # per call; each call also has call_created, call_started, agent_said, call_ended
EVENTS_PER_CALL = TRANSCRIPTS + 4


@dataclass
class World:
    db: Database
    cluster: NatsSupercluster
    scopes: dict[str, TenantScope]

    def run(self, coro: Awaitable[T], timeout: float = 60.0) -> T:
        return self.db.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with NatsSupercluster(tmp_path_factory.mktemp("nats"), REGIONS) as cluster, embedded_database() as db:
        db.run(upgrade(db.engine))
        scopes = {}
        for region in REGIONS:
            async def make(session: AsyncSession, region: str = region) -> TenantScope:
                tenant, _ = await bootstrap_tenant(session, f"consumer {region}", region)
                return TenantScope(tenant.id, region)

            scopes[region] = db.run(run_transaction(db.sessions, make))
        yield World(db, cluster, scopes)


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Client]:
    # Reconnects forever, as the cell's own connection does: a server restart must not end the consumer.
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield nc
    finally:
        await nc.close()


def call_events(scope: TenantScope) -> list[CallEventEnvelope]:
    call_id = str(uuid.uuid4())
    stream = "MZ" + uuid.uuid4().hex[:8]
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("call_started", {"call_sid": "CA1", "stream_sid": stream, "resumed": False}),
        *[("transcript", {"text": f"line {i}", "turn": i}) for i in range(1, TRANSCRIPTS + 1)],
        ("agent_said", {"text": "goodbye", "interrupted": False, "start_ms": 0, "end_ms": 10}),
        ("call_ended", {"disposition": "done", "turns": TRANSCRIPTS, "duration_s": 4.2}),
    ]
    created = CallEventEnvelope.new(call_id=call_id, tenant_id=str(scope.tenant_id), region=scope.region,
                                    kind="call_created", event_id=f"{call_id}:created",
                                    data={"direction": "inbound", "from": "+4915100000000"}, source="control")
    return [created] + [
        CallEventEnvelope.new(call_id=call_id, tenant_id=str(scope.tenant_id), region=scope.region, kind=kind,
                              event_id=f"{call_id}:{stream}:{seq}", data=data, source="w1")
        for seq, (kind, data) in enumerate(kinds, start=1)
    ]


async def publish(js: JetStreamContext, envelope: CallEventEnvelope) -> None:
    """Publish until the stream acknowledges, as a worker does; the msg id makes each retry safe."""
    while True:
        try:
            await publish_event(js, envelope.subject, envelope.to_bytes(), msg_id=envelope.event_id,
                                attempts=3)
            return
        except (NatsError, OSError):
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Counts:
    events: int
    turns: int
    usage: int
    calls: int


async def counts(sessions: async_sessionmaker[AsyncSession], envelopes: list[CallEventEnvelope]) -> Counts:
    call_ids = {uuid.UUID(e.call_id) for e in envelopes}

    async def q(session: AsyncSession) -> Counts:
        async def n(model: Any, column: Any) -> int:
            stmt = unscoped(select(func.count()).select_from(model).where(column.in_(call_ids)), "test audit")
            return int(await session.scalar(stmt) or 0)

        return Counts(await n(CallEvent, CallEvent.call_id), await n(Turn, Turn.call_id),
                      await n(UsageRecord, UsageRecord.call_id), await n(Call, Call.id))

    return await run_transaction(sessions, q)


def expected(envelopes: list[CallEventEnvelope]) -> Counts:
    calls = len({e.call_id for e in envelopes})
    return Counts(len(envelopes), calls * (TRANSCRIPTS + 1), calls, calls)


async def until(probe: Callable[[], Awaitable[bool]]) -> None:
    # The caller's timeout bounds this; no timing is asserted.
    while not await probe():
        await asyncio.sleep(0.05)


async def settled(sessions: async_sessionmaker[AsyncSession], envelopes: list[CallEventEnvelope]) -> Counts:
    want = expected(envelopes)

    async def done() -> bool:
        return await counts(sessions, envelopes) == want

    await until(done)
    return await counts(sessions, envelopes)


def test_consumers_of_every_region_persist_each_event_once(world: World) -> None:
    per_region = {r: [e for _ in range(4) for e in call_events(world.scopes[r])] for r in REGIONS}

    async def main() -> dict[str, EventConsumer]:
        async with connect(world.cluster.url("eu")) as eu, connect(world.cluster.url("in")) as in_, \
                connect(world.cluster.url("us")) as us:
            conns = {"eu": eu, "in": in_, "us": us}
            consumers = {r: EventConsumer(conns[r], world.db.sessions, r, fetch_timeout=0.5) for r in REGIONS}
            for consumer in consumers.values():
                await consumer.start()
            try:
                for region, envelopes in per_region.items():
                    js = conns[region].jetstream()
                    for envelope in envelopes:
                        await publish(js, envelope)
                    # One event published twice beyond the stream's dedupe (another Nats-Msg-Id).
                    dup = envelopes[2]
                    await publish_event(js, dup.subject, dup.to_bytes(), msg_id=f"{dup.event_id}-again")
                for envelopes in per_region.values():
                    assert await settled(world.db.sessions, envelopes) == expected(envelopes)

                async def duplicates_seen() -> bool:
                    return all(c.stats.duplicates == 1 for c in consumers.values())

                await until(duplicates_seen)
            finally:
                for consumer in consumers.values():
                    await consumer.stop()
            return consumers

    consumers = world.run(main())
    for region, consumer in consumers.items():
        assert consumer.durable == durable_name(region) == f"control-{region}"
        assert consumer.stats.applied == len(per_region[region]) and consumer.stats.rejected == 0

    # Each tenant's rows are in its home region.
    async def regions(session: AsyncSession) -> set[tuple[uuid.UUID, str]]:
        tenants = [s.tenant_id for s in world.scopes.values()]
        stmt = unscoped(select(CallEvent.tenant_id, CallEvent.region).where(CallEvent.tenant_id.in_(tenants))
                        .distinct(), "test audit")
        return {(row.tenant_id, row.region) for row in await session.execute(stmt)}

    found = world.run(run_transaction(world.db.sessions, regions))
    assert found == {(s.tenant_id, s.region) for s in world.scopes.values()}


def test_crash_before_ack_redelivers_without_doubles(world: World) -> None:
    scope = world.scopes["eu"]
    envelopes = [e for _ in range(3) for e in call_events(scope)]
    applied_before_crash: list[str] = []

    async def main() -> EventConsumer:
        async def crash_after_third(sessions: Any, envelope: CallEventEnvelope) -> IngestOutcome:
            outcome = await ingest_event(sessions, envelope, stream_region="eu")
            applied_before_crash.append(envelope.event_id)
            if len(applied_before_crash) == 3:
                # The process dies after the commit and before the ack.
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await asyncio.sleep(0)
            return outcome

        async with connect(world.cluster.url("eu")) as nc:
            js = nc.jetstream()
            for envelope in envelopes:
                await publish(js, envelope)
            doomed_nc = await nats.connect(world.cluster.url("eu"))
            doomed = EventConsumer(doomed_nc, world.db.sessions, "eu", ack_wait=1.0, ingest=crash_after_third)
            await doomed.start()
            await until(lambda: _done(doomed))
            await doomed_nc.close()  # the dead process's connection goes too
            assert len(applied_before_crash) == 3

            survivor = EventConsumer(nc, world.db.sessions, "eu", ack_wait=1.0, fetch_timeout=0.5)
            await survivor.start()
            try:
                assert await settled(world.db.sessions, envelopes) == expected(envelopes)
                await until(lambda: _true(survivor.stats.duplicates >= 1))
            finally:
                await survivor.stop()
            return survivor

    survivor = world.run(main())
    # The third event was committed but never acked: redelivered, and recognised as a duplicate
    # (so is any acked one whose ack the dying connection lost).
    assert survivor.stats.duplicates >= 1
    assert survivor.stats.applied == len(envelopes) - 3


async def _done(consumer: EventConsumer) -> bool:
    return not consumer.running


async def _true(value: bool) -> bool:
    return value


def test_malformed_messages_are_terminated_and_counted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    scope = world.scopes["eu"]
    good = call_events(scope)[:2]
    call_id = good[0].call_id
    marker = "CALLER-SAID-SOMETHING-PRIVATE"
    tenant = str(scope.tenant_id)
    subject = call_subject("eu", tenant, call_id, "transcript")

    def body(**overrides: Any) -> bytes:
        doc = {"event_id": f"{call_id}:bad:{uuid.uuid4().hex[:6]}", "call_id": call_id, "tenant_id": tenant,
               "region": "eu", "kind": "transcript", "occurred_at": 1.0, "data": {"text": marker}}
        return json.dumps({**doc, **overrides}).encode()

    stranger = str(uuid.uuid4())
    bad = [
        (subject, b"not json " + marker.encode()),
        (subject, json.dumps({"text": marker}).encode()),  # no envelope fields
        (subject, body(call_id=marker)),  # not a UUID (and the value must not reach the log)
        (subject, body(region="us")),  # an event of another region on this region's stream
        (call_subject("eu", stranger, call_id, "transcript"), body(tenant_id=stranger)),  # unknown tenant
        (call_subject("eu", tenant, str(uuid.uuid4()), "transcript"), body()),  # subject names another call
    ]

    async def main() -> tuple[EventConsumer, Any]:
        async with connect(world.cluster.url("eu")) as nc:
            js = nc.jetstream()
            await ensure_call_stream(js, "eu")
            for i, (subj, data) in enumerate(bad):
                await publish_event(js, subj, data, msg_id=f"bad-{call_id}-{i}")
            for envelope in good:
                await publish(js, envelope)
            consumer = EventConsumer(nc, world.db.sessions, "eu", fetch_timeout=0.5)
            await consumer.start()
            try:
                await until(lambda: _true(consumer.stats.applied + consumer.stats.rejected >= len(bad) + 2))
            finally:
                await consumer.stop()
            info = await js.consumer_info(call_stream_name("eu"), durable_name("eu"))
            return consumer, info

    with caplog.at_level("INFO", logger="control.events"):
        consumer, info = world.run(main())
    assert consumer.stats.rejected == len(bad) and consumer.stats.applied == 2
    assert consumer.stats.retried == 0
    assert info.num_ack_pending == 0 and info.num_pending == 0  # nothing left to redeliver
    assert "terminated message" in caplog.text and marker not in caplog.text


def test_region_server_restart_while_publishing_loses_and_doubles_nothing(world: World) -> None:
    scope = world.scopes["in"]
    envelopes = [e for _ in range(10) for e in call_events(scope)]

    async def main() -> EventConsumer:
        url = world.cluster.url("in")
        async with connect(url) as consumer_nc, connect(url) as pub_nc:
            # Given the JetStream context, as the cell runtime does.
            consumer = EventConsumer(consumer_nc.jetstream(), world.db.sessions, "in", fetch_timeout=0.5,
                                     ack_wait=2.0)
            await consumer.start()
            js = pub_nc.jetstream()
            restarted = asyncio.Event()

            async def publisher() -> None:
                for i, envelope in enumerate(envelopes):
                    await publish(js, envelope)
                    if i == len(envelopes) // 3:
                        # Restart the region's only server in the middle of the stream of events.
                        restart = asyncio.create_task(asyncio.to_thread(world.cluster.restart, "in"))
                        restart.add_done_callback(lambda _: restarted.set())
                await restarted.wait()

            try:
                await publisher()
                assert await settled(world.db.sessions, envelopes) == expected(envelopes)
            finally:
                await consumer.stop()
            return consumer

    consumer = world.run(main(), timeout=90)
    assert consumer.stats.applied == len(envelopes)
    assert consumer.stats.rejected == 0 and consumer.stats.given_up == 0


def test_database_outage_is_retried_until_every_event_lands(world: World) -> None:
    scope = world.scopes["us"]
    envelopes = [e for _ in range(3) for e in call_events(scope)]

    async def main() -> EventConsumer:
        async with connect(world.cluster.url("us")) as nc:
            consumer = EventConsumer(nc, world.db.sessions, "us", fetch_timeout=0.5, nak_delay=0.1,
                                     max_nak_delay=0.5)
            await consumer.start()
            try:
                await asyncio.to_thread(world.db.pg.stop)
                try:
                    for envelope in envelopes:
                        await publish(nc.jetstream(), envelope)
                    await until(lambda: _true(consumer.stats.retried >= 3))
                finally:
                    await asyncio.to_thread(world.db.pg.start)
                assert await settled(world.db.sessions, envelopes) == expected(envelopes)
            finally:
                await consumer.stop()
            return consumer

    consumer = world.run(main())
    assert consumer.stats.applied == len(envelopes)
    assert consumer.stats.given_up == 0 and consumer.stats.rejected == 0


# --- strict stream order under database trouble ------------------------------------------------------


def conversation(scope: TenantScope) -> list[CallEventEnvelope]:
    """A call whose turns alternate caller / agent, with events that enqueue no webhook in between."""
    call_id = str(uuid.uuid4())
    stream = "MZ" + uuid.uuid4().hex[:8]
    kinds: list[tuple[str, dict[str, Any]]] = [("call_started", {"call_sid": "CA2", "resumed": False})]
    for i in range(1, 4):
        kinds += [("transcript", {"text": f"question {i}", "turn": i}),
                  ("agent_said", {"text": f"answer {i}", "interrupted": False}),
                  ("turn", {"index": i, "voice_to_voice_ms": 400.0 + i})]
    kinds.append(("call_ended", {"disposition": "done", "turns": 6, "duration_s": 9}))

    def make(kind: str, event_id: str, data: dict[str, Any]) -> CallEventEnvelope:
        return CallEventEnvelope.new(call_id=call_id, tenant_id=str(scope.tenant_id), region=scope.region,
                                     kind=kind, event_id=event_id, data=data, source="w1")

    return [make("call_created", f"{call_id}:created", {"direction": "inbound"})] + [
        make(kind, f"{call_id}:{stream}:{seq}", data) for seq, (kind, data) in enumerate(kinds, start=1)]


CONVERSATION_TURNS = [(s, w, f"{'question' if w == 'caller' else 'answer'} {(s + 1) // 2}")
                      for s, w in zip(range(1, 7), ["caller", "agent"] * 3, strict=True)]


def hooked_tenant(w: World, label: str) -> TenantScope:
    """A tenant of eu with one webhook endpoint (nothing is sent: no dispatcher runs here)."""
    async def make(session: AsyncSession) -> TenantScope:
        tenant, _ = await bootstrap_tenant(session, f"consumer {label}", "eu")
        scope = TenantScope(tenant.id, "eu")
        session.add(scope.new(WebhookEndpoint, id=uuid.uuid4(), url="http://127.0.0.1:9/hook",
                              signing_secret="whsec_" + base64.b64encode(os.urandom(24)).decode()))
        return scope

    return w.run(run_transaction(w.db.sessions, make))


async def turns_of(sessions: async_sessionmaker[AsyncSession], call_id: str) -> list[tuple[int, str, str]]:
    async def q(session: AsyncSession) -> list[tuple[int, str, str]]:
        stmt = unscoped(select(Turn.seq, Turn.speaker, Turn.text).where(Turn.call_id == uuid.UUID(call_id))
                        .order_by(Turn.seq), "test audit")
        return [(row.seq, row.speaker, row.text) for row in await session.execute(stmt)]

    return await run_transaction(sessions, q)


def stored_turns(w: World, call_id: str) -> list[tuple[int, str, str]]:
    return w.run(turns_of(w.db.sessions, call_id))


def connection_lost() -> OperationalError:
    # What SQLAlchemy raises when the database connection drops mid-transaction.
    return OperationalError("INSERT INTO turns ...", {}, ConnectionResetError("connection reset by peer"))


def test_a_database_failure_mid_call_keeps_the_turns_in_order(world: World) -> None:
    scope = hooked_tenant(world, "order")
    events = conversation(scope)
    failing = events[5].event_id  # the caller's second question
    assert events[5].kind == "transcript"
    failures = {failing: 2}
    wakes: list[int] = []

    async def flaky(sessions: Any, envelope: CallEventEnvelope) -> IngestResult:
        if failures.get(envelope.event_id):
            failures[envelope.event_id] -= 1
            raise connection_lost()
        return await apply_event(sessions, envelope, stream_region="eu")

    async def main() -> EventConsumer:
        async with connect(world.cluster.url("eu")) as nc:
            js = nc.jetstream()
            await ensure_call_stream(js, "eu")
            for envelope in events:  # all published first: one batch holds the whole call
                await publish(js, envelope)
            consumer = EventConsumer(nc, world.db.sessions, "eu", fetch_timeout=0.5, nak_delay=0.05,
                                     max_nak_delay=0.2, ingest=flaky, on_applied=lambda: wakes.append(1))
            await consumer.start()
            try:
                await until(lambda: _true(consumer.stats.applied == len(events)))
            finally:
                await consumer.stop()
            return consumer

    consumer = world.run(main())
    assert stored_turns(world, events[0].call_id) == CONVERSATION_TURNS
    assert consumer.stats.retried == 2 and consumer.stats.given_up == 0 and consumer.stats.rejected == 0
    # Woken once per event that enqueued a webhook: all but the three latency samples.
    assert len(wakes) == len(events) - 3


def test_poison_is_terminated_after_a_few_tries_and_the_rest_applies(world: World) -> None:
    scope = world.scopes["eu"]
    events = conversation(scope)
    refused, buggy = events[4].event_id, events[-1].event_id  # a latency sample, and the call's end
    assert events[4].kind == "turn" and events[-1].kind == "call_ended"
    tries: dict[str, int] = {}

    async def poisoned(sessions: Any, envelope: CallEventEnvelope) -> IngestOutcome:
        if envelope.event_id in (refused, buggy):
            tries[envelope.event_id] = tries.get(envelope.event_id, 0) + 1
            if envelope.event_id == refused:
                raise IntegrityError("INSERT ...", {}, Exception("violates check constraint"))
            raise RuntimeError("a bug")
        return await ingest_event(sessions, envelope, stream_region="eu")

    async def main() -> tuple[EventConsumer, Any]:
        async with connect(world.cluster.url("eu")) as nc:
            js = nc.jetstream()
            await ensure_call_stream(js, "eu")
            for envelope in events:
                await publish(js, envelope)
            consumer = EventConsumer(nc, world.db.sessions, "eu", fetch_timeout=0.5, nak_delay=0.05,
                                     max_nak_delay=0.1, ingest=poisoned)
            await consumer.start()
            try:
                await until(lambda: _true(consumer.stats.applied + consumer.stats.given_up == len(events)))
            finally:
                await consumer.stop()
            return consumer, await js.consumer_info(call_stream_name("eu"), durable_name("eu"))

    consumer, info = world.run(main())
    assert tries == {refused: 3, buggy: 3}
    assert consumer.stats.given_up == 2 and consumer.stats.applied == len(events) - 2
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert stored_turns(world, events[0].call_id) == CONVERSATION_TURNS


def test_stopping_while_the_database_fails_hands_the_call_back_in_order(world: World) -> None:
    scope = world.scopes["eu"]
    events = conversation(scope)
    failing = events[5].event_id  # the caller's second question

    async def down_for_one(sessions: Any, envelope: CallEventEnvelope) -> IngestResult:
        if envelope.event_id == failing:
            raise connection_lost()
        return await apply_event(sessions, envelope, stream_region="eu")

    async def main() -> tuple[EventConsumer, EventConsumer]:
        async with connect(world.cluster.url("eu")) as nc:
            js = nc.jetstream()
            await ensure_call_stream(js, "eu")
            for envelope in events:
                await publish(js, envelope)
            # A long backoff: stop() must interrupt it rather than wait (the test's timeout bounds this).
            first = EventConsumer(nc, world.db.sessions, "eu", fetch_timeout=0.5, nak_delay=120,
                                  max_nak_delay=120, ingest=down_for_one)
            await first.start()
            try:
                await until(lambda: _true(first.stats.retried >= 1))
            finally:
                await first.stop()
            assert await turns_of(world.db.sessions, events[0].call_id) == CONVERSATION_TURNS[:2]
            second = EventConsumer(nc, world.db.sessions, "eu", fetch_timeout=0.5)
            await second.start()
            try:
                await until(lambda: _true(second.stats.applied >= len(events) - 5))
            finally:
                await second.stop()
            return first, second

    first, second = world.run(main(), timeout=30)
    # created, started, question 1, answer 1 and its latency sample; then it waited on question 2.
    assert first.stats.applied == 5 and first.stats.given_up == 0
    assert second.stats.applied == len(events) - 5 and second.stats.duplicates == 0
    assert stored_turns(world, events[0].call_id) == CONVERSATION_TURNS
