"""A call survives its worker: two real worker processes in a region's pool (NATS slot assignment), a
minimal control-side voice webhook, and the Twilio simulator. Worker 1 is SIGKILLed mid-call; the
simulator follows the `<Connect action>` as Twilio does, the webhook sees live state and asks the pool
again, and worker 2 resumes the conversation from the history worker 1 saved in the KV bucket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import nats
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from quart import Quart

from cells.coordination.call_state import CallStateStore
from cells.coordination.envelope import CallEventEnvelope, call_id_for_sid
from cells.coordination.slots import request_slot
from cells.launcher import NatsSupercluster, ensure_call_stream
from cells.launcher.jetstream import call_stream_name
from cells.simulator.caller import CallerLine, ScriptedCaller
from cells.simulator.run import free_port, worker_process
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine
from cells.telephony.call_token import SECRET_ENV, CallTokenAuthority
from cells.telephony.twilio_webhook import (
    NumberRoute,
    SlotRequest,
    WebhookSettings,
    WorkerSlot,
    twilio_voice_blueprint,
)
from regions.objectstore import RegionStore

TOKEN = secrets.token_hex(16)
SECRET = secrets.token_urlsafe(48)
TENANT, AGENT = str(uuid.uuid4()), str(uuid.uuid4())
NUMBER = "+15005550001"
AGENT_SPEC = {"id": AGENT, "tenant_id": TENANT, "region": "eu", "name": "Front desk", "vertical": "reception",
              "persona": "", "voice": {"provider": "espeak", "voice_id": "en-us"}, "providers": {},
              "tools": [], "flows": {},
              "compliance": {"ai_disclosure": True, "disclosure_text": "Hi, an AI answers.",
                             "record_calls": True},
              "updated_at": "2026-01-01T00:00:00+00:00"}


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("cell")
    with ExitStack() as stack:
        sc = stack.enter_context(NatsSupercluster(root / "nats", ("eu", "in", "us")))
        os.environ[SECRET_ENV] = SECRET  # the workers redeem the tokens the webhook mints
        stack.callback(os.environ.pop, SECRET_ENV, None)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for wid in ("w1", "w2"):
            proc, _ = stack.enter_context(worker_process(
                root / wid, TOKEN, ["--nats-url", sc.url("eu"), "--region", "eu", "--worker-id", wid,
                                    "--capacity", "2", "--profile", "instant",
                                    "--object-store", str(root / "objects")]))
            procs[wid] = proc
        yield {"nats": sc, "workers": procs, "root": root}


@asynccontextmanager
async def control_webhook(nats_url: str) -> AsyncIterator[str]:
    """The control plane's voice webhook, reduced to what a resume needs."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_call_stream(js, "eu")
    state = await CallStateStore.open(js, "eu")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def slot(req: SlotRequest) -> WorkerSlot | None:
        body = {"call_id": str(call_id_for_sid(req.call_sid)), "call_sid": req.call_sid,
                "tenant_id": req.tenant_id, "region": "eu", "agent_id": req.agent_id, "agent": AGENT_SPEC,
                "from": req.from_number, "to": req.to_number, "direction": req.direction,
                "resume": req.resume}
        reply = await request_slot(nc, "eu", body, timeout=1.0, attempts=3)
        return WorkerSlot(reply["stream_url"], reply["worker_id"]) if reply else None

    async def should_resume(call_sid: str, form: dict[str, str]) -> bool:
        return await state.should_resume(str(call_id_for_sid(call_sid)))

    app = Quart(__name__)
    app.register_blueprint(twilio_voice_blueprint(
        WebhookSettings(auth_token=TOKEN, public_base_url=url, allow_insecure_streams=True),
        tokens=CallTokenAuthority(SECRET), lookup_number={NUMBER: NumberRoute(TENANT, AGENT)}.get,
        request_slot=slot, should_resume=should_resume))
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        while True:  # until it listens
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            await asyncio.sleep(0.05)
        yield url
    finally:
        stop.set()
        await server
        await nc.close()


async def call_events(nats_url: str, call_id: str) -> list[CallEventEnvelope]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    subject = f"eu.calls.{TENANT}.{call_id}.>"
    sub = await js.pull_subscribe(subject, stream=call_stream_name("eu"), config=ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, filter_subject=subject))
    out: list[CallEventEnvelope] = []
    while True:
        try:
            out.extend(CallEventEnvelope.from_bytes(m.data) for m in await sub.fetch(200, timeout=1.0))
        except nats.errors.TimeoutError:
            break
    await nc.close()
    return out


def test_a_call_resumes_on_another_worker_when_its_worker_dies(cell: dict[str, Any]) -> None:
    sc: NatsSupercluster = cell["nats"]
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
            cell["workers"][victim].send_signal(signal.SIGKILL)
            result = await calling
            while (after := await store.load(call_id)) and after["status"] != "ended":
                await asyncio.sleep(0.05)  # the worker settles the call after the caller's hang-up
            await nc.close()
            return {"peer": peer, "result": result, "before": before, "after": after, "victim": victim,
                    "call_id": call_id}

    out = asyncio.run(asyncio.wait_for(go(), 120))
    peer, result, before, after = out["peer"], out["result"], out["before"], out["after"]
    survivor = {"w1": "w2", "w2": "w1"}[out["victim"]]

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

    async def until_ended() -> list[CallEventEnvelope]:
        while True:
            evs = await call_events(sc.url("eu"), out["call_id"])
            if any(e.kind == "call_ended" for e in evs):
                return evs
            await asyncio.sleep(0.1)  # the worker publishes the last events after settling the state

    events = asyncio.run(asyncio.wait_for(until_ended(), 30))
    started = [e for e in events if e.kind == "call_started"]
    assert [(e.data["resumed"], e.data["stream_sid"]) for e in started] == [
        (False, peer.stream_sids[0]), (True, peer.stream_sids[1])]
    assert started[1].data["worker_id"] == survivor == started[1].source
    by_stream = {sid: [e for e in events if e.event_id.split(":")[1] == sid] for sid in peer.stream_sids}
    for sid, evs in by_stream.items():
        seqs = [int(e.event_id.rsplit(":", 1)[1]) for e in evs]
        assert seqs == list(range(1, len(seqs) + 1)), f"stream {sid}: events in order, none lost"
    kinds_1 = {e.kind for e in by_stream[peer.stream_sids[0]]}
    kinds_2 = [e.kind for e in by_stream[peer.stream_sids[1]]]
    assert {"transcript", "agent_said", "turn"} <= kinds_1 and "call_ended" not in kinds_1
    assert {"transcript", "agent_said", "turn", "recording_ready"} <= set(kinds_2)
    assert kinds_2.count("call_ended") == 1 and kinds_2[-1] == "call_ended"
    ended = by_stream[peer.stream_sids[1]][-1]
    assert ended.data["disposition"] == "caller_hung_up" and ended.data["duration_s"] > 0
    said = [e.data["text"] for e in by_stream[peer.stream_sids[1]] if e.kind == "agent_said"]
    assert said[0].startswith("Sorry about that, the line dropped for a moment.")
    rec = next(e for e in by_stream[peer.stream_sids[1]] if e.kind == "recording_ready")
    assert rec.data["object_key"] == f"{TENANT}/{out['call_id']}-{peer.stream_sids[1]}.wav"
    store = RegionStore(cell["root"] / "objects", "eu")
    assert store.exists(rec.data["object_key"]) and rec.data["size_bytes"] > 44
    assert json.loads(json.dumps(after))  # the state is plain JSON
