"""Worker slot assignment over a real nats-server: queue group, capacity, reservations, refusals."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import nats
import pytest
from nats.aio.client import Client

from cells.contract.envelope import slot_subject
from cells.contract.slots import SlotServer, call_key, request_slot
from cells.launcher import NatsSupercluster

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsSupercluster]:
    with NatsSupercluster(tmp_path_factory.mktemp("nats"), ("eu", "us")) as sc:
        yield sc


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


@asynccontextmanager
async def workers(url: str, capacities: list[int], region: str = "eu",
                  **kwargs: Any) -> AsyncIterator[list[SlotServer]]:
    conns: list[Client] = []
    servers: list[SlotServer] = []
    try:
        for i, cap in enumerate(capacities):
            nc = await nats.connect(url)
            conns.append(nc)
            server = SlotServer(nc, region, worker_id=f"w{i}", stream_url=f"wss://w{i}.example/media",
                                capacity=cap, **kwargs)
            await server.start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            await server.stop()
        for nc in conns:
            await nc.close()


def req(call_id: str, **extra: Any) -> dict[str, Any]:
    return {"call_id": call_id, "call_sid": "CA" + call_id, "tenant_id": "t", "region": "eu",
            "agent_id": "a", "agent": {"id": "a"}, "from": "+1", "to": "+2", "direction": "inbound",
            "resume": False, **extra}


def test_a_burst_is_spread_over_the_pool_without_exceeding_capacity(cluster: NatsSupercluster) -> None:
    async def go() -> tuple[list[dict[str, Any] | None], list[SlotServer]]:
        async with workers(cluster.url("eu"), [2, 2]) as pool, await_conn(cluster.url("eu")) as nc:
            replies = await asyncio.gather(*(request_slot(nc, "eu", req(f"c{i}"), timeout=1.0, attempts=4)
                                             for i in range(6)))
            return replies, pool

    replies, pool = run(go())
    accepted = [r for r in replies if r is not None]
    assert len(accepted) == 4, replies
    per_worker = Counter(r["worker_id"] for r in accepted)
    assert per_worker == {"w0": 2, "w1": 2}
    assert all(r["accepted"] and r["capacity"] == 2 and r["stream_url"].startswith("wss://")
               for r in accepted)
    assert [s.used for s in pool] == [2, 2]


@asynccontextmanager
async def await_conn(url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(url)
    try:
        yield nc
    finally:
        await nc.close()


def test_a_full_pool_and_an_empty_pool_give_no_slot(cluster: NatsSupercluster) -> None:
    async def go() -> tuple[Any, ...]:
        async with await_conn(cluster.url("eu")) as nc:
            nobody = await request_slot(nc, "eu", req("lonely"), timeout=0.5, attempts=2)
            async with workers(cluster.url("eu"), [1]) as (w,):
                first = await request_slot(nc, "eu", req("x1"))
                full = await request_slot(nc, "eu", req("x2"), timeout=0.5, attempts=3)
                # A full worker that still gets a request (in flight as it left the group) refuses it.
                direct = json.loads(w.handle(json.dumps(req("x3")).encode()))
                return nobody, first, full, direct, w.listening

    nobody, first, full, direct, listening = run(go())
    assert nobody is None
    assert first is not None and first["worker_id"] == "w0"
    assert full is None
    assert direct == {"accepted": False, "worker_id": "w0", "stream_url": "wss://w0.example/media",
                      "active": 0, "capacity": 1, "reason": "full"}
    assert listening is False, "a full worker leaves the queue group"


def test_a_slot_is_held_until_the_stream_ends_and_a_reservation_expires(cluster: NatsSupercluster) -> None:
    expired: list[str] = []

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with workers(cluster.url("eu"), [1], reservation_s=0.5,
                           on_expire=lambda r: expired.append(r["call_sid"])) as (w,), \
                await_conn(cluster.url("eu")) as nc:
            out["a"] = await request_slot(nc, "eu", req("a"))
            # The same call asking again (its reply was lost) keeps its one slot.
            out["again"] = json.loads(w.handle(json.dumps(req("a")).encode()))
            out["used_after_again"] = w.used
            w.stream_started(call_key("a", "CAa"))
            out["b_while_active"] = await request_slot(nc, "eu", req("b"), timeout=0.3, attempts=2)
            w.stream_ended(call_key("a", "CAa"))
            out["b"] = await _until_accepted(nc, req("b"))
            # "b" never streams: its reservation expires and the slot comes back.
            out["c"] = await _until_accepted(nc, req("c"))
            out["accepted"] = w.accepted
        return out

    out = run(go())
    assert out["a"]["accepted"] and out["again"]["accepted"]
    assert out["used_after_again"] == 1
    assert out["b_while_active"] is None
    assert out["b"]["accepted"] and out["c"]["accepted"]
    # The worker is told which call never came (it ends that call); a call that streamed is not named.
    assert expired[:1] == ["CAb"] and "CAa" not in expired


async def _until_accepted(nc: Client, request: dict[str, Any]) -> dict[str, Any]:
    while True:
        reply = await request_slot(nc, "eu", request, timeout=0.3, attempts=1)
        if reply is not None:
            return reply
        await asyncio.sleep(0.05)


def test_bad_requests_and_vetoed_agents_are_refused(cluster: NatsSupercluster) -> None:
    async def go() -> list[dict[str, Any]]:
        vet = lambda r: None if r["agent_id"] == "a" else "agent_unavailable"  # noqa: E731
        async with workers(cluster.url("eu"), [3], vet=vet) as (w,), await_conn(cluster.url("eu")) as nc:
            replies = []
            for body in (b"not json", json.dumps({"no": "call id"}).encode(),
                         json.dumps(req("v", agent_id="other")).encode()):
                msg = await nc.request(slot_subject("eu"), body, timeout=2)
                replies.append(json.loads(msg.data))
            assert w.used == 0
            return replies

    replies = run(go())
    assert [r["accepted"] for r in replies] == [False, False, False]
    assert [r["reason"] for r in replies] == ["bad_request", "bad_request", "agent_unavailable"]


def test_workers_of_another_region_never_answer(cluster: NatsSupercluster) -> None:
    async def go() -> dict[str, Any] | None:
        async with workers(cluster.url("us"), [2], region="us"), await_conn(cluster.url("us")) as nc:
            return await request_slot(nc, "eu", req("elsewhere"), timeout=0.5, attempts=2)

    assert run(go()) is None


def test_a_stream_being_set_up_keeps_its_reservation(cluster: NatsSupercluster) -> None:
    expired: list[str] = []

    async def go() -> None:
        async with workers(cluster.url("eu"), [1], reservation_s=0.4,
                           on_expire=lambda r: expired.append(r["call_sid"])) as (w,), \
                await_conn(cluster.url("eu")) as nc:
            assert await request_slot(nc, "eu", req("slow"))
            key = call_key("slow", "CAslow")
            # The stream arrived and its agent warms up for longer than a reservation lasts.
            for _ in range(4):
                w.stream_arriving(key)
                await asyncio.sleep(0.2)
            assert expired == [] and key in w.reserved
            # Set-up failed and nothing more happens: the slot is given back after all.
            await asyncio.sleep(0.6)
            assert expired == ["CAslow"] and w.free == 1

    run(go())
