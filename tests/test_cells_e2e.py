"""The three regional cells on the real services: calls through each cell's webhook, assignment over
NATS, events persisted exactly once, a worker killed mid-call, a NATS server restarted under load,
and the residency audit over everything those calls left behind."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import wave
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from cell_stack import (
    PlacedCall,
    WebhookReceiver,
    api_get,
    call_id_of,
    events_of,
    place_call,
    running_stack,
    stream_ids,
    wait_completed,
    wait_for,
)
from standardwebhooks.webhooks import Webhook

from cells.launcher.stack import EmbeddedStack
from cells.simulator.twilio_peer import TwilioPeer
from regions.objectstore import RegionStore

REGIONS = ("eu", "in", "us")


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack() as s:
        yield s


def _usage_calls(stack: EmbeddedStack, region: str) -> int:
    totals = api_get(stack, region, "/usage").json()["totals"]
    return sum(t["calls"] for t in totals)


def _completed_calls(stack: EmbeddedStack, region: str) -> int:
    items = api_get(stack, region, "/calls?limit=100").json()["items"]
    return sum(1 for c in items if c["status"] == "completed")


def _assert_persisted_once(stack: EmbeddedStack, region: str, call_id: str) -> list[dict]:
    """Every event the workers and the webhook published is in the database once, and nothing else."""
    events = events_of(stack, region, call_id)
    db_ids = [e["event_id"] for e in events]
    in_stream = stream_ids(stack, region, call_id)
    assert sorted(db_ids) == sorted(set(in_stream)), "an event was lost between the stream and the database"
    assert not [i for i, n in Counter(in_stream).items() if n > 1], "an event was stored twice in the stream"
    # Worker events are numbered per media stream: a gap would be an event lost before the stream.
    by_stream: dict[str, list[int]] = {}
    for event_id in db_ids:
        parts = event_id.split(":")
        if len(parts) == 3:
            by_stream.setdefault(parts[1], []).append(int(parts[2]))
    assert by_stream, "no worker events"
    for stream_sid, seqs in by_stream.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"gap in the events of stream {stream_sid}"
    assert [e["kind"] for e in events].count("call_ended") == 1
    return events


def test_a_call_in_each_region_is_served_and_kept_in_its_home_region(stack: EmbeddedStack) -> None:
    receiver = WebhookReceiver()
    demo = stack.demo["eu"]
    created = httpx.post(f"{stack.api_url('eu')}/v1/tenants/{demo.tenant_id}/webhook-endpoints",
                         headers={"Authorization": f"Bearer {demo.owner_token}"},
                         json={"url": receiver.url, "event_types": ["call.ended"]})
    assert created.status_code == 201
    secret = created.json()["signing_secret"]

    async def all_regions() -> list[PlacedCall]:
        return list(await asyncio.gather(*(place_call(stack, r) for r in REGIONS)))

    try:
        calls = asyncio.run(all_regions())
        _check_calls(stack, calls)
        # The eu tenant's endpoint got a signed call.ended for its call (and nothing of the others).
        eu_call = call_id_of(stack, "eu", calls[0].call_sid)
        wait_for(lambda: receiver.received, what="the tenant webhook")
    finally:
        receiver.close()
    body, headers = receiver.received[0]
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "call.ended" and event["data"]["call_id"] == eu_call
    assert len(receiver.received) == 1
    deliveries = api_get(stack, "eu", f"/webhook-endpoints/{created.json()['id']}/deliveries").json()
    assert [d["status"] for d in deliveries["items"]] == ["delivered"]


def _check_calls(stack: EmbeddedStack, calls: list[PlacedCall]) -> None:
    for placed in calls:
        region = placed.region
        assert placed.result.ended_by_agent, f"{region}: the agent did not finish the call"
        call_id = wait_completed(stack, region, placed.call_sid)
        detail = api_get(stack, region, f"/calls/{call_id}").json()
        assert detail["status"] == "completed" and detail["direction"] == "inbound"
        assert detail["to_e164"] == stack.demo[region].number
        assert detail["latency"]["turns"], "per-turn stage timings are stored"
        turns = api_get(stack, region, f"/calls/{call_id}/transcript").json()["turns"]
        assert turns[0]["speaker"] == "agent" and "AI assistant" in turns[0]["text"]
        assert any(t["speaker"] == "caller" and t["text"] for t in turns)
        events = _assert_persisted_once(stack, region, call_id)
        kinds = [e["kind"] for e in events]
        assert kinds[0] == "call_created" and "call_started" in kinds and "recording_ready" in kinds
        # One usage record per completed call.
        assert _usage_calls(stack, region) == _completed_calls(stack, region)
        rec = api_get(stack, region, f"/calls/{call_id}/recording")
        assert rec.status_code == 200 and rec.headers["content-type"].startswith("audio/")
        with wave.open(io.BytesIO(rec.content)) as w:
            assert (w.getnchannels(), w.getframerate()) == (2, 8000)
            assert w.getnframes() / 8000 > 5


def test_requests_for_another_region_or_tenant_are_not_served(stack: EmbeddedStack) -> None:
    # An eu tenant asked for at the us cell: redirected home, with its own token.
    resp = api_get(stack, "us", "/agents", tenant_region="eu")
    assert resp.status_code == 307
    assert resp.headers["location"].startswith(stack.api_url("eu") + "/v1/tenants/")
    # The in tenant's token on the eu tenant: sent to the in cell (by the token alone), which refuses it.
    wrong = api_get(stack, "eu", "/agents", token=stack.demo["in"].owner_token)
    assert wrong.status_code == 307 and wrong.headers["location"].startswith(stack.api_url("in"))
    in_token = {"Authorization": f"Bearer {stack.demo['in'].owner_token}"}
    refused = httpx.get(wrong.headers["location"], headers=in_token)
    assert refused.status_code == 401
    # The eu token cannot tell a tenant that exists elsewhere from one that does not exist at all.
    missing = httpx.get(f"{stack.api_url('eu')}/v1/tenants/00000000-0000-4000-8000-000000000000/agents",
                        headers={"Authorization": f"Bearer {stack.demo['eu'].owner_token}"})
    elsewhere = api_get(stack, "eu", "/agents", tenant_region="in", token=stack.demo["eu"].owner_token)
    assert missing.status_code == elsewhere.status_code == 401
    assert {k: v for k, v in missing.json().items() if k != "instance"} == \
        {k: v for k, v in elsewhere.json().items() if k != "instance"}
    assert api_get(stack, "eu", "/agents", token="as_eu_" + "x" * 43).status_code == 401
    # The us cell does not answer a call to the eu number: its tenant's data may not be served there.
    peer = TwilioPeer(stack.api_url("us"), stack.secrets["twilio_auth_token"],
                      to_number=stack.demo["eu"].number)
    twiml = asyncio.run(_ring_text(peer))
    assert "<Say" in twiml and "not in service" in twiml and "<Stream" not in twiml
    # A webhook without Twilio's signature is refused.
    bad = httpx.post(f"{stack.api_url('eu')}/twilio/voice", data={"CallSid": "CA1", "To": "+442079460001"})
    assert bad.status_code == 403


async def _ring_text(peer: TwilioPeer) -> str:
    url = peer.base_url + "/twilio/voice"
    form = {"CallSid": peer.call_sid, "AccountSid": peer.account_sid, "From": peer.from_number,
            "To": peer.to_number, "Direction": "inbound", "CallStatus": "ringing", "ApiVersion": "2010-04-01"}
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.post(url, data=form, headers=peer._signed(url, form))
    resp.raise_for_status()
    return resp.text


def _worker_of(stack: EmbeddedStack, call_id: str, region: str = "eu") -> str | None:
    started = [e for e in events_of(stack, region, call_id) if e["kind"] == "call_started"]
    return started[-1]["payload"].get("worker_id") if started else None


def test_a_booking_lands_in_the_regions_shared_calendar(stack: EmbeddedStack) -> None:
    placed = asyncio.run(place_call(stack, "eu", "booking"))
    call_id = wait_completed(stack, "eu", placed.call_sid)
    assert api_get(stack, "eu", f"/calls/{call_id}").json()["status"] == "completed"
    demo = stack.demo["eu"]
    # One file for the agent in the eu store, which every eu worker reads and writes; no other region's.
    name = f"{demo.tenant_id}/calendar-{demo.agent_id}.json"
    calendar = RegionStore(stack.object_store, "eu").path(name)
    bookings = json.loads(calendar.read_text())["bookings"]
    assert [(b["service"], b["time"]) for b in bookings] == [("cleaning", "10:00")]
    assert "lopez" in bookings[0]["name"].lower()
    for other in ("in", "us"):
        assert not RegionStore(stack.object_store, other).root.joinpath(demo.tenant_id).exists()


def test_a_call_whose_worker_dies_is_resumed_by_another_worker(stack: EmbeddedStack) -> None:
    result: dict[str, PlacedCall] = {}
    caller = threading.Thread(target=lambda: result.update(call=asyncio.run(place_call(stack, "eu"))))
    caller.start()
    try:
        peer_sid = wait_for(lambda: _live_call_sid(stack), what="the call to start")
        call_id = call_id_of(stack, "eu", peer_sid)
        # Kill the worker once the caller's first turn is persisted, while the agent is answering.
        wait_for(lambda: any(e["kind"] == "transcript" for e in events_of(stack, "eu", call_id)),
                 what="the caller's first turn")
        victim_id = _worker_of(stack, call_id)
        victim = next(w for w in stack.cells["eu"].workers
                      if w.args[w.args.index("--worker-id") + 1] == victim_id)
        assert victim.proc is not None
        os.kill(victim.proc.pid, signal.SIGKILL)
    finally:
        caller.join(timeout=120)
    placed = result["call"]
    assert placed.result.streams == 2, "Twilio's <Connect action> brought the call to a second stream"
    assert placed.result.ended_by_agent
    call_id = wait_completed(stack, "eu", placed.call_sid)
    events = _assert_persisted_once(stack, "eu", call_id)
    started = [e["payload"] for e in events if e["kind"] == "call_started"]
    assert [s["resumed"] for s in started] == [False, True]
    assert started[0]["worker_id"] == victim_id != started[1]["worker_id"]
    turns = api_get(stack, "eu", f"/calls/{call_id}/transcript").json()["turns"]
    agent_lines = [t["text"] for t in turns if t["speaker"] == "agent"]
    assert agent_lines[0].startswith("Thank you for calling"), "the disclosure is said once, at the start"
    assert sum("AI assistant" in line for line in agent_lines) == 1
    assert any("line dropped" in line for line in agent_lines), "the new worker picks the call up"
    assert _usage_calls(stack, "eu") == _completed_calls(stack, "eu")
    stack.restart_child(victim)


def test_a_call_whose_only_worker_dies_ends_as_dropped_and_is_billed(stack: EmbeddedStack) -> None:
    # The us cell has one worker: when it dies mid-call nobody can resume the call.
    [victim] = stack.cells["us"].workers
    result: dict[str, PlacedCall] = {}
    caller = threading.Thread(target=lambda: result.update(call=asyncio.run(place_call(stack, "us"))))
    caller.start()
    try:
        peer_sid = wait_for(lambda: _live_call_sid(stack, "us"), what="the call to start")
        call_id = call_id_of(stack, "us", peer_sid)
        wait_for(lambda: any(e["kind"] == "transcript" for e in events_of(stack, "us", call_id)),
                 what="the caller's first turn")
        assert victim.proc is not None
        os.kill(victim.proc.pid, signal.SIGKILL)
        caller.join(timeout=120)
        placed = result["call"]
        assert placed.result.streams == 1
        # Twilio asked what to do once the stream dropped; the caller is told, not left in silence.
        [answer] = placed.peer.action_answers
        assert "<Say" in answer and "<Connect" not in answer
        assert wait_completed(stack, "us", placed.call_sid) == call_id
        detail = api_get(stack, "us", f"/calls/{call_id}").json()
        assert (detail["status"], detail["disposition"]) == ("completed", "dropped_no_worker")
        assert _usage_calls(stack, "us") == _completed_calls(stack, "us"), "the talk time is billed"
    finally:
        caller.join(timeout=120)
        stack.restart_child(victim)


def _live_call_sid(stack: EmbeddedStack, region: str = "eu") -> str | None:
    items = api_get(stack, region, "/calls?status=in_progress&limit=10").json()["items"]
    return items[0]["carrier_call_sid"] if items else None


def test_a_nats_restart_under_load_loses_and_doubles_no_event(stack: EmbeddedStack) -> None:
    assert stack.nats is not None

    async def load() -> list[PlacedCall]:
        calls = [asyncio.create_task(place_call(stack, "eu")) for _ in range(3)]
        await asyncio.sleep(6.0)  # mid-call: the agents are speaking, turns are being published
        await asyncio.to_thread(stack.nats.restart, "eu")
        return list(await asyncio.gather(*calls))

    for placed in asyncio.run(load()):
        assert placed.result.ended_by_agent
        call_id = wait_completed(stack, "eu", placed.call_sid)
        _assert_persisted_once(stack, "eu", call_id)
    assert _usage_calls(stack, "eu") == _completed_calls(stack, "eu")


def test_the_residency_audit_finds_every_call_in_its_home_region(stack: EmbeddedStack) -> None:
    assert stack.nats is not None
    nats_urls = ",".join(f"{r}={stack.nats.url(r)}" for r in REGIONS)
    audit = subprocess.run(
        [sys.executable, "-m", "control.audit", "residency", "--database-url", stack.database_url,
         "--nats-url", nats_urls, "--object-store", str(stack.object_store), "--json"],
        capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["clean"] and report["violations"] == []
    for region in REGIONS:
        summary = report["regions"][region]
        # It looked at what the calls above left: call rows and events, recordings, live call state.
        assert summary["rows"]["calls"] >= 1 and summary["rows"]["call_events"] >= 5
        assert summary["events"] >= summary["rows"]["call_events"]
        assert summary["objects"] >= 1 and summary["call_states"] >= 1
