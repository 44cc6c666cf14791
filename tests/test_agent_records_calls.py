"""Whole calls with real audio to agents that exist only as control-plane records: each record is created
through the control API, and the JSON the API returns is what the embedded worker runs
(`python -m cells.worker --agent-spec`, through the vertical registry). A bike-repair shop defined purely
by its flows and its `http` tool greets as itself and books through its own server after the caller's yes;
the clinic, as a record of vertical "reception", still books in its calendar through the same path.
The Twilio peer calls in real time with eSpeak NG callers; the worker hears them with Whisper."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from bike_shop import SECRET, SHOP, bike_shop_record, tool_server
from control_api_fixtures import AGENT, FAST, Api, control_api

from cells.simulator.caller import CallerLine, CallResult, ScriptedCaller
from cells.simulator.run import agent_utterances, transcribe, worker_process
from cells.simulator.scripts import SCRIPTS
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine

TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    r = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"], json=body)
    assert r.status == 201, r.text
    return dict(r.body)


async def call(url: str, lines: list[CallerLine]) -> tuple[TwilioPeer, CallResult]:
    peer = TwilioPeer(url, TOKEN)
    await peer.open_stream(await peer.ring())
    result = await ScriptedCaller(peer, lines, engine=EspeakEngine(), voice="en-us+f2", max_call_s=90).run()
    return peer, result


def run_agent(tmp: Path, record: dict[str, Any],
              lines: list[CallerLine]) -> tuple[list[str], CallResult, Path]:
    """Runs the call; (the conversation as the worker recorded it, the caller's result, the data dir)."""
    spec = tmp / "agent.json"
    spec.write_text(json.dumps(record))
    data = tmp / "worker"
    with worker_process(data, TOKEN, ["--agent-spec", str(spec)]) as (_, url):
        peer, result = asyncio.run(call(url, lines))
        path = data / "calls" / f"{peer.call_sid}.json"
        for _ in range(150):
            if path.exists():
                break
            time.sleep(0.1)
    history = json.loads(path.read_text())["history"] if path.exists() else []
    return [f"{m['role']}: {m['content']}" for m in history], result, data


def test_a_bike_shop_defined_only_by_its_record_greets_as_itself_and_books_after_a_yes(
        api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSPEAK_SECRET_BIKE_SHOP", SECRET)  # the worker holds the secret the record names
    monkeypatch.setenv("AUTOSPEAK_TOOLS_ALLOW_PRIVATE", "1")  # the shop's server listens on loopback
    with tool_server() as shop:
        record = create(api, bike_shop_record(shop.url))
        assert record["vertical"] == "bike_repair" and record["tools"][0]["secret"] == "bike_shop"
        assert SECRET not in json.dumps(record)  # the record names the secret; it never holds it
        # Day and time in one breath (both slots of the node filled from one answer), then the name.
        lines = [CallerLine("Next Tuesday at ten in the morning."), CallerLine("My name is Maria Lopez."),
                 CallerLine("Yes, please.")]
        talk, result, _ = run_agent(tmp_path, record, lines)
        received = list(shop.received)
    today = date.today()
    next_tuesday = today + timedelta(days=7 - today.weekday() + 1)  # Tuesday of next week
    heard = asyncio.run(transcribe([a for _, a in agent_utterances(result.agent_audio)[:1]]))[0].lower()
    assert "riverside" in heard and "bike" in heard, heard  # the caller heard this agent, not a clinic
    assert "dental" not in heard
    assert [r["arguments"] for r in received] == [
        {"day": next_tuesday.isoformat(), "time": "10:00", "name": "Maria Lopez"}], talk
    assert shop.unsigned == 0
    assert result.ended_by_agent, "the flow's end node says goodbye and ends the call"


# The clinic's booking call is in test_call_e2e and the record path in the bike shop's call above: this
# third whole call runs with -m slow (the default run's 15-minute budget).
@pytest.mark.slow
def test_the_clinic_as_a_record_still_books_through_the_same_path(api: Api, tmp_path: Path) -> None:
    record = create(api, {**AGENT, "name": "Front desk", "flows": {}, "tools": [], "providers": {}})
    assert record["vertical"] == "reception" and record["flows"] == {}
    talk, result, data = run_agent(tmp_path, record, SCRIPTS["booking"])
    assert any(t.startswith("assistant: Thank you for calling Bright Smile Dental.") for t in talk), talk
    calendar = data / "agents" / record["id"] / "calendar.json"
    bookings = json.loads(calendar.read_text())["bookings"]
    today = date.today()
    next_tuesday = today + timedelta(days=7 - today.weekday() + 1)
    assert [(b["date"], b["time"], b["service"]) for b in bookings] == [
        (next_tuesday.isoformat(), "10:00", "cleaning")], talk
    assert "lopez" in bookings[0]["name"].lower() and bookings[0]["phone"] == "5552187"
    assert SHOP not in json.dumps(bookings)
    assert result.ended_by_agent, "the agent says goodbye and ends the call"
