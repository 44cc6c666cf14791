"""Whole phone calls on the embedded stack: a worker process (webhook + media WebSocket +
PocketSphinx + dialogue policy + eSpeak NG) called by the Twilio peer with real audio in real
time, plus the carrier-side failures a worker must survive."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cells.simulator.caller import CallerLine, CallResult, ScriptedCaller
from cells.simulator.run import embedded_worker
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine
from tests.strict_twilio_caller import Line, Outcome, run_script
from tests.strict_twilio_peer import StrictTwilioCall

TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("worker")
    with embedded_worker(data, TOKEN) as url:
        yield url, data


def record(data: Path, call_sid: str, timeout: float = 15.0) -> dict[str, Any]:
    path = data / "calls" / f"{call_sid}.json"

    async def wait() -> None:
        for _ in range(int(timeout * 10)):
            if path.exists():
                return
            await asyncio.sleep(0.1)

    asyncio.run(wait())
    return json.loads(path.read_text())


async def call(url: str, lines: list[CallerLine], voice: str = "en-us") -> tuple[TwilioPeer, CallResult]:
    peer = TwilioPeer(url, TOKEN)
    await peer.open_stream(await peer.ring())
    result = await ScriptedCaller(peer, lines, engine=EspeakEngine(), voice=voice, max_call_s=90).run()
    return peer, result


def healthy(url: str) -> bool:
    return httpx.get(url + "/healthz", timeout=5).json()["ok"] is True


def test_a_booking_call_by_a_strict_twilio_peer_books_the_slot_the_caller_asked_for(
        worker: tuple[str, Path]) -> None:
    """The peer is tests/strict_twilio_peer.py, written from Twilio's docs alone (not our simulator): every
    message we send must be a documented one, and the call ends as on Twilio (`<Connect action>` answered
    with a hang-up, then the status callback)."""
    url, data = worker
    lines = [Line("Hi, I would like to book a cleaning please."), Line("Next Tuesday at ten in the morning."),
             Line("My name is Maria Lopez."), Line(dtmf="5552187#"),  # keyed in, as callers do when asked
             Line("Yes, please."), Line("No, that's all. Thank you, goodbye.")]

    async def run() -> tuple[StrictTwilioCall, Outcome, int | None]:
        peer = StrictTwilioCall(f"{url}/twilio/voice", TOKEN, to="+15005550001",
                                status_url=f"{url}/twilio/status")
        await peer.ring()
        outcome = await run_script(peer, lines, voice="en-us+f2", rate_wpm=170)
        return peer, outcome, await peer.status_callback("completed")

    peer, outcome, status = asyncio.run(run())
    assert peer.violations == []
    assert outcome.ended_by_agent and "<Hangup" in outcome.hangup_twiml[0], "the agent says goodbye, hangs up"
    assert status is not None and 200 <= status < 300
    today = date.today()
    next_tuesday = today + timedelta(days=7 - today.weekday() + 1)  # Tuesday of next week
    bookings = json.loads((data / "calendar.json").read_text())["bookings"]
    assert [(b["date"], b["time"], b["service"]) for b in bookings] == [
        (next_tuesday.isoformat(), "10:00", "cleaning")], bookings
    assert "lopez" in bookings[0]["name"].lower()
    assert bookings[0]["phone"] == "5552187"
    # The booking was made only after the caller's yes to the read-back.
    history = record(data, peer.call_sid)["history"]
    booked_at = next(i for i, m in enumerate(history)
                     if any(c["name"] == "create_booking" for c in m["tool_calls"]))
    readback = [i for i, m in enumerate(history[:booked_at]) if "Shall I book it?" in m["content"]]
    assert readback and history[readback[-1] + 1]["role"] == "user"


def test_two_simultaneous_calls_do_not_disturb_each_other(worker: tuple[str, Path]) -> None:
    url, data = worker

    async def both() -> list[tuple[TwilioPeer, CallResult]]:
        return await asyncio.gather(
            call(url, [CallerLine("What are your opening hours?"), CallerLine("Thank you, goodbye.")]),
            call(url, [CallerLine("Where are you located?"), CallerLine("Thanks, bye.")], voice="en-us+f2"),
        )

    results = asyncio.run(both())
    sids = set()
    for peer, result in results:
        rec = record(data, peer.call_sid)
        sids.add(rec["call_sid"])
        assert rec["call_sid"] == peer.call_sid
        assert all(t.latency_ms is not None for t in result.turns[:1]), "every caller got an answer"
        assert len(rec["turns"]) >= 1
        assert result.agent_audio.size > 8000 * 5
    assert len(sids) == 2
    hours, place = (record(data, p.call_sid) for p, _ in results)
    said = [" ".join(m["content"] for m in r["history"] if m["role"] == "assistant").lower()
            for r in (hours, place)]
    assert "open" in said[0] or "hour" in said[0], said[0]
    assert healthy(url)


def test_caller_barging_in_is_heard_and_the_agent_stops(worker: tuple[str, Path]) -> None:
    url, data = worker
    lines = [CallerLine("Hi, what services do you offer?"),
             CallerLine("Sorry, what are your opening hours?", barge_in_after_ms=700),
             CallerLine("Thank you, goodbye.")]
    peer, result = asyncio.run(call(url, lines))
    rec = record(data, peer.call_sid)
    assert result.clears >= 1, "the worker must send `clear` when the caller talks over it"
    barge = [e for e in rec["events"] if e["kind"] == "barge_in"]
    assert barge
    assert any(t["interrupted"] for t in rec["turns"])


def test_caller_hanging_up_mid_sentence_ends_the_call_cleanly(worker: tuple[str, Path]) -> None:
    url, data = worker

    async def run() -> TwilioPeer:
        peer = TwilioPeer(url, TOKEN)
        await peer.open_stream(await peer.ring())
        caller = ScriptedCaller(peer, [CallerLine("I would like to book an appointment for next week")],
                                engine=EspeakEngine())
        receiver = asyncio.create_task(peer.receive_loop())
        await asyncio.sleep(1.0)
        for frame in [caller.audio[0][i:i + 160] for i in range(0, len(caller.audio[0]) // 2, 160)]:
            await peer.send_frame(frame)
            await asyncio.sleep(0.02)
        await peer.hang_up()
        receiver.cancel()
        return peer

    peer = asyncio.run(run())
    rec = record(data, peer.call_sid)
    assert rec["disposition"] == "caller_hung_up"
    assert healthy(url)


def test_unsigned_or_tampered_webhooks_are_refused(worker: tuple[str, Path]) -> None:
    url, _ = worker
    form = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15005550006",
            "To": "+15005550001"}
    assert httpx.post(url + "/twilio/voice", data=form).status_code == 403
    peer = TwilioPeer(url, TOKEN)
    headers = peer._signed(url + "/twilio/voice", form)
    assert httpx.post(url + "/twilio/voice", data={**form, "To": "+15005550002"},
                      headers=headers).status_code == 403


async def _stream_closes(target_url: str, headers: dict[str, str], messages: list[str]) -> str:
    """Sends messages on a media stream and returns the close reason the worker gave."""
    try:
        async with connect(target_url, additional_headers=headers, max_size=2**20) as ws:
            for m in messages:
                await ws.send(m)
            async with asyncio.timeout(10):
                async for _ in ws:
                    pass
    except ConnectionClosed as exc:
        return exc.rcvd.reason if exc.rcvd else ""
    except Exception as exc:  # an upgrade refused with an HTTP status
        return f"refused: {exc}"
    return ""


def test_bad_streams_are_closed_and_the_worker_survives(worker: tuple[str, Path]) -> None:
    url, _ = worker

    async def run() -> dict[str, str]:
        peer = TwilioPeer(url, TOKEN)
        target = await peer.ring()
        signed = peer._signed(target.url, {})
        connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

        def start(params: dict[str, str], sid: str = peer.call_sid) -> str:
            return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": peer.stream_sid,
                               "start": {"accountSid": peer.account_sid, "streamSid": peer.stream_sid,
                                         "callSid": sid, "tracks": ["inbound"], "customParameters": params,
                                         "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                         "channels": 1}}})

        out = {
            "unsigned upgrade": await _stream_closes(target.url, {}, [connected]),
            "forged token": await _stream_closes(target.url, signed,
                                                 [connected, start({"call_token": "v1.x.y"})]),
            "media before start": await _stream_closes(target.url, signed, ['{"event":"media","media":{}}']),
        }
        # The genuine token works once; the replay is refused.
        await peer.open_stream(target)
        out["reused token"] = await _stream_closes(target.url, signed, [connected, start(target.parameters)])
        oversized = json.dumps({"event": "media", "media": {"payload": "A" * 100_000}})
        await peer._send({"event": "bogus"})  # unknown events are ignored
        assert peer.ws is not None
        await peer.ws.send(oversized)
        try:
            async with asyncio.timeout(10):
                async for _ in peer.ws:
                    pass
        except ConnectionClosed as exc:
            # hypercorn refuses it before the app sees it (1009 "message too big"); either way
            # the stream is closed as too big.
            out["oversized"] = str(exc.rcvd.code) if exc.rcvd else ""
        return out

    reasons = asyncio.run(run())
    assert reasons["unsigned upgrade"].startswith("refused"), reasons
    assert reasons["forged token"] == "bad_token", reasons
    assert reasons["media before start"] == "before_start", reasons
    assert reasons["reused token"] == "reused_token", reasons
    assert reasons.get("oversized") == "1009", reasons
    assert healthy(url)


def test_the_readme_main_command_runs_a_call_and_writes_its_report(tmp_path: Path) -> None:
    """`autospeak call` as a user runs it (no token in the environment)."""
    env = {k: v for k, v in os.environ.items() if k != "TWILIO_AUTH_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "cells.cli", "call", "--script", "hours", "--data-dir",
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Voice-to-voice latency" in out.stdout
    reports = list(tmp_path.glob("*-report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["worker"]["disposition"] in ("completed", "caller_hung_up")
    assert report["latency_ms"]["n"] >= 1
