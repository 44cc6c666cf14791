"""EventPublisher on a real nats-server: order, message ids, and no loss or duplicate across a restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from cells.contract.envelope import CallEventEnvelope
from cells.contract.jetstream import call_stream_name, ensure_call_stream
from cells.coordination.publisher import EventPublisher
from cells.launcher import NatsSupercluster

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsSupercluster]:
    with NatsSupercluster(tmp_path_factory.mktemp("nats"), ("eu", "in", "us")) as sc:
        yield sc


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


async def connect(url: str) -> Client:
    return await nats.connect(url, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.2)


async def stored(nc: Client, tenant: str, call: str) -> list[tuple[CallEventEnvelope, dict[str, str]]]:
    """Every message of the call in the stream, in stream order, with its headers."""
    js = nc.jetstream()
    subject = f"eu.calls.{tenant}.{call}.>"
    info = await js.stream_info(call_stream_name("eu"))
    sub = await js.pull_subscribe(subject, durable=None, stream=call_stream_name("eu"),
                                  config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL,
                                                        ack_policy=AckPolicy.NONE, filter_subject=subject))
    out: list[tuple[CallEventEnvelope, dict[str, str]]] = []
    while True:
        try:
            msgs = await sub.fetch(100, timeout=1.0)
        except TimeoutError:  # nats-py raises its own or asyncio's when nothing is left
            break
        out.extend((CallEventEnvelope.from_bytes(m.data), dict(m.headers or {})) for m in msgs)
    await sub.unsubscribe()
    assert info.state.messages >= len(out)
    return out


def ids() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


def test_events_arrive_in_order_with_their_ids_as_msg_ids(cluster: NatsSupercluster) -> None:
    tenant, call = ids()

    async def go() -> tuple[list[Any], EventPublisher]:
        nc = await connect(cluster.url("eu"))
        js = nc.jetstream()
        await ensure_call_stream(js, "eu")
        pub = EventPublisher(js, call_id=call, tenant_id=tenant, region="eu", stream_sid="MZ1", source="w1")
        returned = [pub.emit("transcript", {"text": f"line {i}", "turn": i}) for i in range(30)]
        assert all(r is not None for r in returned)
        assert await pub.close()
        got = await stored(nc, tenant, call)
        await nc.close()
        return got, pub

    got, pub = run(go())
    assert [env.event_id for env, _ in got] == [f"{call}:MZ1:{i}" for i in range(1, 31)]
    assert [env.data["turn"] for env, _ in got] == list(range(30))
    assert all(h["Nats-Msg-Id"] == env.event_id for env, h in got)
    assert all(env.source == "w1" and env.region == "eu" and env.tenant_id == tenant for env, _ in got)
    assert pub.published == 30 and pub.dropped == 0


def test_a_restarted_server_loses_and_doubles_nothing(cluster: NatsSupercluster) -> None:
    tenant, call = ids()

    async def go() -> tuple[list[Any], EventPublisher]:
        nc = await connect(cluster.url("eu"))
        js = nc.jetstream(timeout=1.0)
        await ensure_call_stream(js, "eu")
        pub = EventPublisher(js, call_id=call, tenant_id=tenant, region="eu", stream_sid="MZ2",
                             ack_timeout=1.0)
        restart = None
        for i in range(120):
            pub.emit("turn", {"index": i})  # the call loop goes on whatever NATS does
            if i == 40:
                restart = asyncio.create_task(asyncio.to_thread(cluster.restart, "eu"))
            await asyncio.sleep(0.02)
        assert restart is not None
        await restart
        assert await pub.close(timeout=40.0), f"{pub.pending} events still queued"
        reader = await connect(cluster.url("eu"))
        got = await stored(reader, tenant, call)
        await reader.close()
        await nc.close()
        return got, pub

    got, pub = run(go(), timeout=90.0)
    assert [env.data["index"] for env, _ in got] == list(range(120)), "each event once, in order"
    assert len({env.event_id for env, _ in got}) == 120
    assert pub.retries > 0, "the restart was felt by the publisher"


def test_malformed_events_are_refused_at_emit(cluster: NatsSupercluster) -> None:
    async def go() -> EventPublisher:
        nc = await connect(cluster.url("eu"))
        tenant, call = ids()
        pub = EventPublisher(nc.jetstream(), call_id=call, tenant_id=tenant, region="eu", stream_sid="MZ3")
        assert pub.emit("Bad Kind!", {}) is None
        assert pub.emit("transcript", {"text": "x" * 300_000}) is None
        assert await pub.close()
        await nc.close()
        return pub

    pub = run(go())
    assert pub.dropped == 2 and pub.seq == 0


def test_what_reaches_the_stream_is_redacted_across_events(cluster: NatsSupercluster) -> None:
    from cells.contract.call_redaction import CallRedactor

    tenant, call = ids()
    card = "5555555555554444"

    async def go() -> list[Any]:
        nc = await connect(cluster.url("eu"))
        js = nc.jetstream()
        await ensure_call_stream(js, "eu")
        pub = EventPublisher(js, call_id=call, tenant_id=tenant, region="eu", stream_sid="MZ9",
                             redactor=CallRedactor(pii=False))
        pub.emit("transcript", {"text": "keypad " + " ".join(card[:8]), "turn": 1})
        pub.emit("agent_said", {"text": "And the rest?"})
        pub.emit("transcript", {"text": "keypad " + " ".join(card[8:]), "turn": 2})
        pub.emit("turn", {"index": 2, "caller_text": "keypad " + " ".join(card[8:]), "agent_text": ""})
        pub.emit("tool_call", {"name": "create_booking", "arguments": {"phone": card},
                               "call_id": call})
        assert await pub.close()
        got = await stored(nc, tenant, call)
        await nc.close()
        return got

    got = run(go())
    assert len(got) == 5
    bodies = [env.to_bytes().decode() for env, _ in got]
    for body in bodies:
        for leaked in (card, " ".join(card[:8]), " ".join(card[8:])):
            assert leaked not in body
    assert got[4][0].data["call_id"] == call  # identifiers stay
