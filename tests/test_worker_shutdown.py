"""A worker of a region's pool that stops, or loses NATS, loses nothing of its calls: real worker
processes, a real NATS supercluster, a minimal control-side webhook and the Twilio simulator.

- SIGTERM mid-call: the worker leaves the pool, saves the call's state, releases its lease, closes the
  stream and flushes its events before it exits; the simulator follows `<Connect action>` and another
  worker resumes the call. The recording of the whole call lists both streams' segments.
- NATS stopped right before the caller hangs up and started again: `call_ended` reaches the stream
  exactly once and the call's state ends up "ended".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from worker_cell import (
    NUMBER,
    TENANT,
    TOKEN,
    WorkerCell,
    by_stream,
    control_webhook,
    events_until,
    seqs,
    worker_cell,
)

from cells.contract.call_state import CallStateStore
from cells.contract.envelope import call_id_for_sid
from cells.simulator.caller import CallerLine, ScriptedCaller
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine
from regions.objectstore import RegionStore

SILENCE = b"\xff" * 160  # 20 ms of mu-law silence


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerCell]:
    with worker_cell(tmp_path_factory.mktemp("cell"), workers=2) as c:
        yield c


async def first_turn_saved(store: CallStateStore, call_id: str, calling: asyncio.Task[Any]) -> dict[str, Any]:
    """The call's state once a caller turn has been answered and saved."""
    while True:
        state = await store.load(call_id)
        roles = [m["role"] for m in (state or {}).get("history", []) if m.get("content")]
        if state is not None and "user" in roles and roles[-1] == "assistant":
            return state
        assert not calling.done(), "the call ended too early"
        await asyncio.sleep(0.05)


def test_a_stopping_worker_hands_its_call_over_with_its_events_flushed(cell: WorkerCell) -> None:
    cell.at_least(2)
    url_eu = cell.nats.url("eu")
    lines = [CallerLine("I would like to book a cleaning please."), CallerLine("Thank you, goodbye.")]

    async def go() -> dict[str, Any]:
        async with control_webhook(url_eu) as url:
            nc = await nats.connect(url_eu)
            store = await CallStateStore.open(nc.jetstream(), "eu")
            peer = TwilioPeer(url, TOKEN, to_number=NUMBER)
            call_id = str(call_id_for_sid(peer.call_sid))
            await peer.open_stream(await peer.ring())
            caller = ScriptedCaller(peer, lines, engine=EspeakEngine(), voice="en-us", max_call_s=90)
            calling = asyncio.create_task(caller.run())
            before = await first_turn_saved(store, call_id, calling)
            victim = before["worker_id"]
            # Every write to the call's state from here on (the release must be among them).
            watcher = await store.kv.watch(call_id)
            seen: list[dict[str, Any]] = []

            async def watch() -> None:
                async for entry in watcher:
                    if entry is not None and entry.value:
                        seen.append(json.loads(entry.value))

            watching = asyncio.create_task(watch())
            proc = cell.workers[victim]
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 60)
            result = await calling
            while (after := await store.load(call_id)) and after["status"] != "ended":
                await asyncio.sleep(0.05)
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            with contextlib.suppress(Exception):
                await watcher.stop()
            await nc.close()
            events = await events_until(url_eu, call_id, "call_ended")
            return {"peer": peer, "result": result, "before": before, "after": after, "victim": victim,
                    "code": code, "seen": seen, "events": events, "call_id": call_id}

    out = asyncio.run(asyncio.wait_for(go(), 120))
    peer, before, after, victim = out["peer"], out["before"], out["after"], out["victim"]
    assert out["code"] == 0, "the worker exited cleanly"
    assert "not published" not in cell.log(victim)

    # The stopping worker released the lease (with the history saved) before the call moved on.
    released = [s for s in out["seen"] if s["worker_id"] == victim and s["lease_until"] == 0]
    assert released and released[-1]["status"] == "active"
    saved = released[-1]["history"]
    assert saved[:len(before["history"])] == before["history"]
    # Another worker resumed from that history and the caller finished the call there.
    assert out["result"].streams == 2 and len(peer.stream_sids) == 2
    assert after is not None and after["worker_id"] != victim
    assert after["status"] == "ended" and after["disposition"] == "caller_hung_up"
    assert after["history"][:len(saved)] == saved
    assert after["history"][len(saved)]["content"].startswith("Sorry about that, the line dropped")

    # Everything the stopping worker published is in the stream, in order, up to its recording.
    streams = by_stream(out["events"], peer.stream_sids)
    first, second = streams[peer.stream_sids[0]], streams[peer.stream_sids[1]]
    for evs in (first, second):
        assert seqs(evs) == list(range(1, len(evs) + 1))
    assert {"call_started", "transcript", "agent_said", "turn"} <= {e.kind for e in first}
    assert first[-1].kind == "recording_ready" and "call_ended" not in {e.kind for e in first}
    assert [e.kind for e in second].count("call_ended") == 1 and second[-1].kind == "call_ended"
    assert second[0].kind == "call_started" and second[0].data["resumed"] is True
    assert second[0].data["worker_id"] == after["worker_id"]

    # The recording covers the whole call: both segments, in order.
    keys = [f"{TENANT}/{out['call_id']}-{sid}.wav" for sid in peer.stream_sids]
    assert after["recordings"] == keys
    assert first[-1].data["segments"] == keys[:1]
    rec = next(e for e in second if e.kind == "recording_ready")
    assert rec.data["object_key"] == keys[1] and rec.data["segments"] == keys
    assert rec.data["content_type"] == "audio/wav" and rec.data["size_bytes"] > 44
    store = RegionStore(cell.root / "objects", "eu")
    assert all(store.exists(k) for k in keys)


def test_call_ended_reaches_the_stream_when_nats_restarts_at_hang_up(cell: WorkerCell) -> None:
    cell.at_least(1)
    sc = cell.nats

    async def go() -> dict[str, Any]:
        async with control_webhook(sc.url("eu")) as url:
            nc = await nats.connect(sc.url("eu"))
            store = await CallStateStore.open(nc.jetstream(), "eu")
            peer = TwilioPeer(url, TOKEN, to_number=NUMBER)
            call_id = str(call_id_for_sid(peer.call_sid))
            await peer.open_stream(await peer.ring())
            receiver = asyncio.create_task(peer.receive_loop())
            quiet = asyncio.Event()

            async def line() -> None:  # the caller listens (silence) while the agent greets
                while not quiet.is_set():
                    await peer.send_frame(SILENCE)
                    await peer.play_tick()
                    await asyncio.sleep(0.02)

            talking = asyncio.create_task(line())
            while not ((state := await store.load(call_id)) and state.get("history")):
                await asyncio.sleep(0.05)  # the greeting was said and saved
            await nc.close()
            worker = state["worker_id"]
            await asyncio.to_thread(sc.stop_server, "eu")
            quiet.set()
            await talking
            await peer.hang_up()
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            # The worker tried to mark the call ended while NATS was down, then NATS comes back.
            failed = f"call {call_id}: marking the call ended failed"
            while failed not in cell.log(worker):
                await asyncio.sleep(0.1)
            await asyncio.to_thread(sc.start_server, "eu")
            nc = await nats.connect(sc.url("eu"))
            store = await CallStateStore.open(nc.jetstream(), "eu")
            while True:
                with contextlib.suppress(Exception):
                    state = await store.load(call_id)
                    if state and state["status"] == "ended":
                        break
                await asyncio.sleep(0.1)
            await nc.close()
            events = await events_until(sc.url("eu"), call_id, "call_ended")
            return {"state": state, "events": events, "worker": worker, "stream_sid": peer.stream_sids[0]}

    out = asyncio.run(asyncio.wait_for(go(), 120))
    state, events = out["state"], out["events"]
    assert state["status"] == "ended" and state["disposition"] == "caller_hung_up"
    assert state["worker_id"] == out["worker"]
    ended = [e for e in events if e.kind == "call_ended"]
    assert len(ended) == 1 and ended[0].data["disposition"] == "caller_hung_up"
    assert seqs(events) == list(range(1, len(events) + 1)), "nothing lost while NATS was down"
    assert events[-1].kind == "call_ended" and events[-2].kind == "recording_ready"
    assert {e.event_id.split(":")[1] for e in events} == {out["stream_sid"]}

    # Cell workers are stateless: no call record on their disks (the control plane stores the call).
    for wid in cell.workers:
        assert not (cell.root / wid / "calls").exists()
