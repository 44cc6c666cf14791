"""A call survives its worker: two real worker processes in a region's pool (NATS slot assignment), a
minimal control-side voice webhook, and the Twilio simulator. Worker 1 is SIGKILLed mid-call; the
simulator follows the `<Connect action>` as Twilio does, the webhook sees live state and asks the pool
again, and worker 2 resumes the conversation from the history worker 1 saved in the KV bucket."""

from __future__ import annotations

import asyncio
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
from cells.launcher import NatsSupercluster
from cells.simulator.caller import CallerLine, ScriptedCaller
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine
from regions.objectstore import RegionStore


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerCell]:
    with worker_cell(tmp_path_factory.mktemp("cell"), workers=2) as c:
        yield c


def test_a_call_resumes_on_another_worker_when_its_worker_dies(cell: WorkerCell) -> None:
    cell.at_least(2)
    sc: NatsSupercluster = cell.nats
    lines = [CallerLine("I would like to book a cleaning please."),
             CallerLine("Next Tuesday at ten in the morning."),
             CallerLine("My name is Maria Lopez."),
             CallerLine("Thank you, goodbye.")]

    async def go() -> dict[str, Any]:
        async with control_webhook(sc.url("eu")) as url:
            nc = await nats.connect(sc.url("eu"))
            store = await CallStateStore.open(nc.jetstream(), "eu")
            peer = TwilioPeer(url, TOKEN, to_number=NUMBER)
            call_id = str(call_id_for_sid(peer.call_sid))
            await peer.open_stream(await peer.ring())
            caller = ScriptedCaller(peer, lines, engine=EspeakEngine(), voice="en-us", max_call_s=90)
            calling = asyncio.create_task(caller.run())
            # Once the first caller turn has been answered and saved, kill the worker that has the call.
            while True:
                before = await store.load(call_id)
                hist = (before or {}).get("history", [])
                roles = [m["role"] for m in hist if m.get("content")]
                if "user" in roles and roles[-1] == "assistant":
                    break
                assert not calling.done(), "the call ended before the worker could be killed"
                await asyncio.sleep(0.05)
            assert before is not None
            victim = before["worker_id"]
            cell.workers[victim].send_signal(signal.SIGKILL)
            result = await calling
            while (after := await store.load(call_id)) and after["status"] != "ended":
                await asyncio.sleep(0.05)  # the worker settles the call after the caller's hang-up
            await nc.close()
            return {"peer": peer, "result": result, "before": before, "after": after, "victim": victim,
                    "call_id": call_id}

    out = asyncio.run(asyncio.wait_for(go(), 120))
    peer, result, before, after = out["peer"], out["result"], out["before"], out["after"]
    survivor = after["worker_id"]
    assert survivor != out["victim"] and survivor in cell.live()

    # The simulator followed the action URL once and the call went on over a second stream.
    assert len(peer.action_requests) >= 1 and peer.action_requests[0]["CallStatus"] == "in-progress"
    assert result.streams == 2 and len(peer.stream_sids) == 2
    # Worker 2 owns the call, started from worker 1's history, apologised and carried on.
    assert after is not None and after["worker_id"] == survivor
    assert after["status"] == "ended" and after["disposition"] == "caller_hung_up"
    assert after["history"][:len(before["history"])] == before["history"]
    rest = after["history"][len(before["history"]):]
    assert rest[0]["role"] == "assistant"
    assert rest[0]["content"].startswith("Sorry about that, the line dropped")
    assert any(m["role"] == "user" for m in rest), "the caller was heard after the resume"

    events = asyncio.run(asyncio.wait_for(events_until(sc.url("eu"), out["call_id"], "call_ended"), 30))
    started = [e for e in events if e.kind == "call_started"]
    assert [(e.data["resumed"], e.data["stream_sid"]) for e in started] == [
        (False, peer.stream_sids[0]), (True, peer.stream_sids[1])]
    assert started[1].data["worker_id"] == survivor == started[1].source
    streams = by_stream(events, peer.stream_sids)
    for sid, evs in streams.items():
        assert seqs(evs) == list(range(1, len(evs) + 1)), f"stream {sid}: events in order, none lost"
    kinds_1 = {e.kind for e in streams[peer.stream_sids[0]]}
    kinds_2 = [e.kind for e in streams[peer.stream_sids[1]]]
    assert {"transcript", "agent_said", "turn"} <= kinds_1 and "call_ended" not in kinds_1
    assert {"transcript", "agent_said", "turn", "recording_ready"} <= set(kinds_2)
    assert kinds_2.count("call_ended") == 1 and kinds_2[-1] == "call_ended"
    ended = streams[peer.stream_sids[1]][-1]
    assert ended.data["disposition"] == "caller_hung_up" and ended.data["duration_s"] > 0
    said = [e.data["text"] for e in streams[peer.stream_sids[1]] if e.kind == "agent_said"]
    assert said[0].startswith("Sorry about that, the line dropped for a moment.")
    rec = next(e for e in streams[peer.stream_sids[1]] if e.kind == "recording_ready")
    assert rec.data["object_key"] == f"{TENANT}/{out['call_id']}-{peer.stream_sids[1]}.wav"
    store = RegionStore(cell.root / "objects", "eu")
    assert store.exists(rec.data["object_key"]) and rec.data["size_bytes"] > 44
    # The call's state lists both streams' segments; the killed worker never wrote its own, so the
    # recording is the one segment that exists.
    keys = [f"{TENANT}/{out['call_id']}-{sid}.wav" for sid in peer.stream_sids]
    assert after["recordings"] == keys
    assert rec.data["segments"] == [keys[1]] and not store.exists(keys[0])
    assert json.loads(json.dumps(after))  # the state is plain JSON
