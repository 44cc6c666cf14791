"""CallStateStore on a real nats-server: the lease (compare-and-set), heartbeats, takeover, should_resume."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import nats
import pytest

from cells.contract.call_state import (
    CallStateStore,
    LeaseLost,
    history_from_dicts,
    history_to_dicts,
)
from cells.launcher import NatsSupercluster
from cells.providers.base import Message, ToolCall

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsSupercluster]:
    with NatsSupercluster(tmp_path_factory.mktemp("nats"), ("eu", "in", "us")) as sc:
        yield sc


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


async def stores(url: str, *workers: str, lease_s: float = 15.0) -> tuple[nats.NATS, list[CallStateStore]]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    return nc, [await CallStateStore.open(js, "eu", worker_id=w, lease_s=lease_s) for w in workers]


HISTORY = [Message("assistant", "Hello, how can I help?"), Message("user", "Book a cleaning."),
           Message("assistant", "", tool_calls=(ToolCall("call_0", "check_availability", {"day": "tue"}),)),
           Message("tool", '{"ok": true}', tool_call_id="call_0"),
           Message("assistant", "Tuesday at ten is free. Shall I book it?")]


def test_history_round_trips_through_json() -> None:
    assert history_from_dicts(history_to_dicts(HISTORY)) == HISTORY


def test_two_workers_racing_for_a_call_only_one_wins(cluster: NatsSupercluster) -> None:
    call = str(uuid.uuid4())

    async def go() -> tuple[list[bool], dict[str, object] | None]:
        nc, (w1, w2) = await stores(cluster.url("eu"), "w1", "w2")
        leases = await asyncio.gather(w1.acquire(call, tenant_id="t", agent_id="a"),
                                      w2.acquire(call, tenant_id="t", agent_id="a"))
        # A takeover with no resume (a duplicate stream) is refused while the lease is live.
        loser = w2 if leases[0] is not None else w1
        again = await loser.acquire(call)
        state = await w1.load(call)
        await nc.close()
        return [lease is not None for lease in leases] + [again is not None], state

    won, state = run(go())
    assert sorted(won[:2]) == [False, True] and won[2] is False
    assert state is not None and state["worker_id"] == ("w1" if won[0] else "w2")
    assert state["status"] == "active" and state["tenant_id"] == "t"


def test_saves_and_heartbeats_renew_the_lease(cluster: NatsSupercluster) -> None:
    call = str(uuid.uuid4())

    async def go() -> tuple[dict[str, object], dict[str, object], float]:
        nc, (w1,) = await stores(cluster.url("eu"), "w1", lease_s=3.0)
        lease = await w1.acquire(call, tenant_id="t", agent_id="a", call_sid="CA1")
        assert lease is not None
        first_until = float(lease.state["lease_until"])
        await lease.save(HISTORY)
        saved = await w1.load(call)
        assert saved is not None
        lease.start_heartbeat(interval=0.1)
        while float((await w1.load(call) or {})["lease_until"]) <= float(saved["lease_until"]):
            await asyncio.sleep(0.05)
        renewed = await w1.load(call)
        lease.stop_heartbeat()
        await nc.close()
        assert renewed is not None
        return saved, renewed, first_until

    saved, renewed, first_until = run(go())
    assert history_from_dicts(saved["history"]) == HISTORY  # type: ignore[arg-type]
    assert float(saved["lease_until"]) >= first_until  # type: ignore[arg-type]
    assert renewed["history"] == saved["history"], "a heartbeat keeps the history"


def test_a_resumed_stream_takes_the_call_over_and_the_old_owner_learns_it(cluster: NatsSupercluster) -> None:
    call = str(uuid.uuid4())

    async def go() -> dict[str, object]:
        nc, (w1, w2, w3) = await stores(cluster.url("eu"), "w1", "w2", "w3")
        old = await w1.acquire(call, stream_sid="MZ1", tenant_id="t")
        assert old is not None
        await old.save(HISTORY[:2])
        out: dict[str, object] = {}
        # Worker 1's stream dropped; the new stream went to worker 2. Worker 3 claiming the same new
        # stream (it cannot, but if it did) never wins as well.
        new = await w2.acquire(call, takeover=True, stream_sid="MZ2")
        dup = await w3.acquire(call, takeover=True, stream_sid="MZ2")
        out["new"], out["dup"] = new is not None, dup is not None
        try:
            await old.save(HISTORY)
            out["old_saved"] = True
        except LeaseLost:
            out["old_saved"] = False
        assert new is not None
        out["history_seen_by_new"] = new.state["history"]
        out["resume_before_end"] = await w1.should_resume(call)
        await new.end("completed", HISTORY)
        out["resume_after_end"] = await w1.should_resume(call)
        out["reacquire_after_end"] = await w3.acquire(call, takeover=True, stream_sid="MZ3") is not None
        out["unknown"] = await w1.should_resume(str(uuid.uuid4()))
        out["final"] = await w1.load(call)
        await nc.close()
        return out

    out = run(go())
    assert out["new"] is True and out["dup"] is False
    assert out["old_saved"] is False, "the old owner's write fails once the call was taken over"
    assert history_from_dicts(out["history_seen_by_new"]) == HISTORY[:2]  # type: ignore[arg-type]
    assert out["resume_before_end"] is True
    assert out["resume_after_end"] is False
    assert out["reacquire_after_end"] is False
    assert out["unknown"] is False
    final = out["final"]
    assert isinstance(final, dict)
    assert final["status"] == "ended" and final["disposition"] == "completed" and final["worker_id"] == "w2"


def test_an_expired_lease_can_be_taken_and_a_released_one_at_once(cluster: NatsSupercluster) -> None:
    call = str(uuid.uuid4())

    async def go() -> list[bool]:
        nc, (w1, w2) = await stores(cluster.url("eu"), "w1", "w2", lease_s=0.3)
        first = await w1.acquire(call)
        assert first is not None
        while (await w1.load(call) or {}).get("lease_until", 0) > w1.clock():  # type: ignore[operator]
            await asyncio.sleep(0.05)
        took = await w2.acquire(call)
        assert took is not None
        await took.release()
        back = await w1.acquire(call)
        await nc.close()
        return [took is not None, back is not None]

    assert run(go()) == [True, True]


def test_recording_keys_accumulate_over_the_streams_of_a_call(cluster: NatsSupercluster) -> None:
    call = str(uuid.uuid4())

    async def go() -> dict[str, object] | None:
        nc, (w1, w2) = await stores(cluster.url("eu"), "w1", "w2")
        first = await w1.acquire(call, stream_sid="MZ1", recording="t/a-MZ1.wav")
        assert first is not None
        await first.save(HISTORY[:1])
        second = await w2.acquire(call, takeover=True, stream_sid="MZ2", recording="t/a-MZ2.wav")
        assert second is not None
        await second.end("completed", HISTORY)
        state = await w1.load(call)
        await nc.close()
        return state

    state = run(go())
    assert state is not None and state["recordings"] == ["t/a-MZ1.wav", "t/a-MZ2.wav"]


def test_an_unacknowledged_write_of_ours_does_not_lose_the_lease(cluster: NatsSupercluster) -> None:
    """NATS restarting: a write lands but its ack is lost, so the lease's revision is stale. The next
    write sees a conflict, finds the entry still ours (same worker and stream) and goes on."""
    call = str(uuid.uuid4())

    async def go() -> tuple[dict[str, object] | None, bool]:
        nc, (w1,) = await stores(cluster.url("eu"), "w1")
        lease = await w1.acquire(call, stream_sid="MZ1")
        assert lease is not None
        stale = lease.revision
        await lease.save(HISTORY[:2])
        lease.revision = stale  # as if the save's ack never arrived
        await lease.end("completed", HISTORY)
        state = await w1.load(call)
        await nc.close()
        return state, lease.lost

    state, lost = run(go())
    assert lost is False
    assert state is not None and state["status"] == "ended" and state["worker_id"] == "w1"


def test_the_webhook_claims_a_call_once_and_a_worker_takes_the_claim(cluster: NatsSupercluster) -> None:
    call = str(uuid.uuid4())

    async def go() -> None:
        nc, (control, w1) = await stores(cluster.url("eu"), "", "w1")
        try:
            assert await control.claim(call, tenant_id="t", agent_id="a", call_sid="CA1")
            assert not await control.claim(call, tenant_id="t", agent_id="a", call_sid="CA1")  # a replay
            assert not await control.should_resume(call)  # ringing: no stream to resume yet
            lease = await w1.acquire(call, stream_sid="MZ1", tenant_id="t", agent_id="a")
            assert lease is not None and lease.state["status"] == "active"
            assert await control.should_resume(call)
            await lease.end("completed", HISTORY)
            assert not await control.claim(call, tenant_id="t", agent_id="a", call_sid="CA1")
        finally:
            await nc.close()

    run(go())


def test_a_resume_is_granted_only_once_the_stream_is_gone(cluster: NatsSupercluster) -> None:
    call = str(uuid.uuid4())
    asked: list[tuple[str, str]] = []
    answer: list[bool | None] = [True]

    async def live(worker_id: str, call_id: str) -> bool | None:
        asked.append((worker_id, call_id))
        return answer[0]

    async def go() -> None:
        nc, (control, w1) = await stores(cluster.url("eu"), "", "w1")
        try:
            lease = await w1.acquire(call, stream_sid="MZ1", tenant_id="t", agent_id="a")
            assert lease is not None
            # The worker still has the stream (a replayed callback): no, after the settling time.
            assert not await control.resumable(call, live, settle_s=0.3, poll_s=0.05)
            assert asked and asked[0] == ("w1", call)
            answer[0] = None  # the worker does not answer (killed): gone
            assert await control.resumable(call, live, settle_s=0.3)
            answer[0] = False  # it answers that the stream is over
            assert await control.resumable(call, live, settle_s=0.3)
            answer[0] = True
            await lease.release()  # released: gone, whatever a probe would say
            asked.clear()
            assert await control.resumable(call, live, settle_s=0.3) and not asked
            await lease.end("completed")
            assert not await control.resumable(call, live, settle_s=0.3)
        finally:
            await nc.close()

    run(go())


def test_the_stream_probe_answers_for_the_worker(cluster: NatsSupercluster) -> None:
    from cells.contract.stream_probe import serve_probe, stream_live

    async def go() -> None:
        nc = await nats.connect(cluster.url("eu"))
        try:
            live = {"c1"}
            sub = await serve_probe(nc, "eu", "ws://127.0.0.1:9/media", live.__contains__)
            assert await stream_live(nc, "eu", "ws://127.0.0.1:9/media", "c1") is True
            assert await stream_live(nc, "eu", "ws://127.0.0.1:9/media", "c2") is False
            await sub.unsubscribe()
            assert await stream_live(nc, "eu", "ws://127.0.0.1:9/media", "c1", timeout=0.5) is None
        finally:
            await nc.close()

    run(go())


def test_the_saved_history_holds_no_card_number(cluster: NatsSupercluster) -> None:
    call = str(uuid.uuid4())
    card = "4111111111111111"
    history = [Message("assistant", "What number can we reach you on?"),
               Message("user", "keypad " + " ".join(card[:8])), Message("assistant", "And the rest?"),
               Message("user", "keypad " + " ".join(card[8:])),
               Message("assistant", "", tool_calls=(ToolCall("c1", "create_booking", {"phone": card}),)),
               Message("tool", f'{{"ok": true, "phone": "{card}"}}', tool_call_id="c1")]

    async def go() -> bytes:
        nc, (w1,) = await stores(cluster.url("eu"), "w1")
        try:
            lease = await w1.acquire(call, stream_sid="MZ1", tenant_id="t", agent_id="a")
            assert lease is not None
            await lease.save(history)
            await lease.end("completed", history)
            entry = await w1.kv.get(call)
            return entry.value or b""
        finally:
            await nc.close()

    raw = run(go()).decode()
    for leaked in (card, " ".join(card[:8]), " ".join(card[8:])):  # whole, or either keyed half
        assert leaked not in raw
    assert "[card]" in raw
