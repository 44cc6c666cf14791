"""Our worker called by a Twilio peer written from Twilio's published docs alone (tests/strict_twilio_peer.py,
independent of cells/simulator): the signed voice webhook and its TwiML, the Media Streams messages both
ways (every message we send checked against the documented shapes), the variants the docs allow, and the
call's end (`<Connect action>`, status callback). The quick tests run a worker with zero-cost providers;
the whole booking call on the embedded speech stack is in test_call_e2e.py."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cells.call.playout import MARK_GRACE_S, Playout
from cells.simulator.run import worker_process
from cells.speech.espeak import EspeakEngine
from tests.strict_twilio_caller import speech
from tests.strict_twilio_peer import (
    StrictTwilioCall,
    outbound_problem,
    twilio_signature,
    ulaw_decode,
    ulaw_encode,
)

TOKEN = secrets.token_hex(16)
NUMBER = "+15005550001"  # the embedded worker's demo number
_ENGINE = EspeakEngine()
REQUEST = speech(_ENGINE, "Hi, I would like to book a cleaning please.")
# Said as soon as the reply starts (no lead-in silence): the instant agent's reply lasts about 2 s.
BARGE_IN = speech(_ENGINE, "Sorry, wait, actually I need a filling instead, not a cleaning.")[1600:]
REPLY_FRAMES = 25  # half a second of the agent's reply: it answered


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("strict")
    with worker_process(data, TOKEN, ["--profile", "instant"]) as (_, url):
        yield url
    log = (data / "worker.log").read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def new_call(url: str, **kwargs: object) -> StrictTwilioCall:
    return StrictTwilioCall(f"{url}/twilio/voice", TOKEN, to=NUMBER, status_url=f"{url}/twilio/status",
                            **kwargs)  # type: ignore[arg-type]


def reply_frames(call: StrictTwilioCall) -> int:
    """`media` messages the application sent after the greeting's mark: its reply."""
    events = [m["event"] for m in call.received]
    return events[events.index("mark"):].count("media") if "mark" in events else 0


async def reply_after(call: StrictTwilioCall, *, over_greeting: bool, frames: int = REPLY_FRAMES) -> int:
    """Says one line after the greeting (or 0.5 s into it) and waits until the reply is clearly under
    way; returns the reply's `media` messages so far."""
    phone = call.phone
    if over_greeting:
        await call.pump(0.5)
    else:
        await call.pump(20, until=lambda: phone.audio_played_at and phone.quiet_for() > 1.0)
    call.say(REQUEST)
    await call.pump(20, until=lambda: not call.speaking)
    await call.pump(20, until=lambda: reply_frames(call) >= frames)
    return reply_frames(call)


def idle(url: str) -> bool:
    """The worker is up and holds no call (a stream it has let go of)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        if health["ok"] and health["active_calls"] == 0:
            return True
        time.sleep(0.1)
    return False


def test_a_call_by_the_book_is_answered_in_documented_messages_only(worker: str) -> None:
    async def run() -> tuple[StrictTwilioCall, int, int | None]:
        call = new_call(worker)
        twiml = await call.ring()
        assert twiml is not None and twiml.url.startswith(("ws://", "wss://"))
        assert twiml.action is not None and set(twiml.parameters) == {"call_token"}
        await call.open_stream()
        replied = await reply_after(call, over_greeting=False, frames=1)
        call.say(BARGE_IN)  # over the reply: the agent stops its audio with `clear`, then answers this
        await call.pump(20, until=lambda: call.phone.clears > 0)
        await call.pump(20, until=lambda: not call.speaking)
        events = [m["event"] for m in call.received]
        await call.pump(20, until=lambda: [m["event"] for m in call.received][len(events):].count(
            "media") >= REPLY_FRAMES)
        await call.send_dtmf("1")
        await call.stop()
        return call, replied, await call.status_callback("completed")

    call, replied, status = asyncio.run(run())
    assert call.violations == []
    events = [m["event"] for m in call.received]
    assert events.count("media") > 100 and replied >= 1
    assert events.count("clear") >= 1 and events[events.index("clear"):].count("media") >= REPLY_FRAMES
    # The greeting's marks came back once its audio had played; none twice, none we did not send.
    sent, echoed = call.phone.marks_sent, call.phone.marks_echoed
    assert echoed and echoed == sent[:len(echoed)]
    assert status is not None and 200 <= status < 300
    assert idle(worker)


@pytest.mark.parametrize("chunk_ms,echo_marks", [(100, True), (10, False)])
def test_other_chunk_sizes_speech_over_the_greeting_and_marks_never_echoed(
        worker: str, chunk_ms: int, echo_marks: bool) -> None:
    """Caller audio in 100 ms or 10 ms messages, a caller talking over the greeting, and a peer that loses
    every mark echo (Twilio echoes each one; without them the agent answers MARK_GRACE_S late)."""
    async def run() -> tuple[StrictTwilioCall, int]:
        call = new_call(worker, chunk_ms=chunk_ms, echo_marks=echo_marks,
                        line_noise_rms=25.0 if echo_marks else 0.0)  # a line with some hiss, or none
        await call.ring("GET" if echo_marks else "POST")  # a number may fetch its TwiML with GET
        await call.open_stream()
        if echo_marks:  # a future event type, and a media message with its keys in another order
            await call.send_raw(json.dumps({"event": "someFutureEvent", "sequenceNumber": "2",
                                            "streamSid": call.stream_sid, "someFutureEvent": {"x": "1"}}))
            await call.send_raw(json.dumps({"streamSid": call.stream_sid, "media": {
                "payload": base64.b64encode(bytes([0xFF]) * 160).decode(), "timestamp": "0", "chunk": "1",
                "track": "inbound"}, "sequenceNumber": "3", "event": "media"}))
        replied = await reply_after(call, over_greeting=True)
        await call.stop()
        return call, replied

    call, replied = asyncio.run(run())
    assert call.violations == [] and replied >= REPLY_FRAMES
    assert call.phone.marks_sent and (call.phone.marks_echoed != []) == echo_marks
    assert idle(worker)


@pytest.mark.parametrize("ending", ["stop_at_once", "stop_mid_greeting", "socket_closed_without_stop"])
def test_every_documented_way_a_stream_ends_releases_the_call(worker: str, ending: str) -> None:
    async def run() -> StrictTwilioCall:
        call = new_call(worker)
        await call.ring()
        await call.open_stream()
        if ending == "stop_at_once":
            await call.stop()
        elif ending == "stop_mid_greeting":
            await call.pump(1.0)
            await call.stop()
        else:
            await call.pump(1.0)
            await call.close()
        return call

    call = asyncio.run(run())
    assert call.violations == []
    assert idle(worker)


def test_a_peer_that_calls_a_local_worker_by_another_host_name_is_answered(worker: str) -> None:
    other = worker.replace("127.0.0.1", "localhost")

    async def run() -> None:
        call = StrictTwilioCall(f"{other}/twilio/voice", TOKEN, to=NUMBER)
        twiml = await call.ring()
        assert twiml is not None
        # The stream URL as reached under the other name is accepted too; a wrong token never is.
        url = twiml.url.replace("127.0.0.1", "localhost")
        headers = {"X-Twilio-Signature": twilio_signature(TOKEN, url)}
        async with connect(url, additional_headers=headers, compression=None):
            pass
        with pytest.raises(InvalidStatus):
            forged_upgrade = {"X-Twilio-Signature": twilio_signature("x" * 32, url)}
            async with connect(url, additional_headers=forged_upgrade):
                pass
        forged = StrictTwilioCall(f"{other}/twilio/voice", "x" * 32, to=NUMBER)
        with pytest.raises(AssertionError, match="403"):
            await forged.ring()

    asyncio.run(run())
    assert idle(worker)


# --- the peer itself: its checks must be able to fail ----------------------------------------------

def test_the_peer_signs_as_twilios_own_library_does() -> None:
    url = "https://eu.example.com/twilio/voice?attempt=1&call_id=x"
    params = {"CallSid": "CA1", "From": "+15551234567", "To": "+15005550001", "CallerName": "A B"}
    assert twilio_signature(TOKEN, url, params) == RequestValidator(TOKEN).compute_signature(url, params)
    assert twilio_signature(TOKEN, url) == RequestValidator(TOKEN).compute_signature(url, {})


def test_the_peer_mu_law_round_trips() -> None:
    pcm = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 12000).astype(np.int16)
    back = ulaw_decode(ulaw_encode(pcm))
    assert np.max(np.abs(back.astype(np.int32) - pcm)) < 400


@pytest.mark.parametrize("message", [
    {"event": "media", "streamSid": "MZ1", "media": {"payload": base64.b64encode(b"\xff" * 160).decode(),
                                                     "track": "outbound"}},
    {"event": "media", "streamSid": "MZ2", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}},
    {"event": "media", "streamSid": "MZ1", "media": {"payload": "not base64!"}},
    {"event": "media", "streamSid": "MZ1", "media": {"payload": ""}},
    {"event": "media", "streamSid": "MZ1",
     "media": {"payload": base64.b64encode(b"RIFF" + bytes(200)).decode()}},
    {"event": "mark", "streamSid": "MZ1", "mark": {}},
    {"event": "mark", "streamSid": "MZ1"},
    {"event": "clear", "streamSid": "MZ1", "extra": 1},
    {"event": "stop", "streamSid": "MZ1"},
    ["media"],
])
def test_the_peer_flags_every_undocumented_message(message: object) -> None:
    assert outbound_problem(message, "MZ1") is not None


def test_the_peer_accepts_the_documented_messages() -> None:
    payload = base64.b64encode(b"\xff" * 160).decode()
    for message in ({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}},
                    {"event": "mark", "streamSid": "MZ1", "mark": {"name": "seg-1"}},
                    {"event": "clear", "streamSid": "MZ1"}):
        assert outbound_problem(message, "MZ1") is None


# --- our playout: a mark whose echo never comes ----------------------------------------------------

def test_an_unechoed_mark_is_overdue_only_after_its_audio_played_and_the_grace() -> None:
    now = [100.0]

    class Sink:
        async def send_audio(self, frame: object) -> None:
            pass

        async def send_mark(self, name: str) -> None:
            pass

    async def run() -> None:
        playout = Playout(Sink(), clock=lambda: now[0], lead_frames=10)  # all 5 frames go out at once
        loop = asyncio.create_task(playout.run())
        seg = playout.begin_segment("hello there")
        playout.add_frames(seg, ["f"] * 5)  # 0.1 s of audio, sent at once on this frozen clock
        playout.end_segment(seg)
        for _ in range(50):
            await asyncio.sleep(0)
        assert playout.speaking
        assert playout.overdue_marks(now[0] + 0.1 + MARK_GRACE_S - 0.01) == []
        assert playout.overdue_marks(now[0] + 0.1 + MARK_GRACE_S + 0.01) == [seg]
        playout.on_mark(seg)  # the echo came after all
        assert playout.overdue_marks(now[0] + 60) == [] and not playout.speaking
        loop.cancel()

    asyncio.run(run())


# --- a regional cell (`autospeak up`'s shape): the control plane's webhook, a worker's stream -------

@pytest.mark.slow
def test_a_cell_answers_the_strict_peer_and_keeps_its_status_callback() -> None:
    """The eu cell's control plane takes the signed webhook (called as `localhost`, as an outside peer
    might), a worker the stream; the agent ends the call, `<Connect action>` hangs up, the status
    callback is taken, and the control plane stores the call as completed."""
    from tests.cell_stack import api_get, events_of, running_stack, wait_completed
    from tests.strict_twilio_caller import Line, run_script

    with running_stack(workers={"eu": 1, "in": 1, "us": 1}) as stack:
        base = stack.api_url("eu").replace("127.0.0.1", "localhost")
        call = StrictTwilioCall(f"{base}/twilio/voice", stack.secrets["twilio_auth_token"],
                                to=stack.demo["eu"].number, status_url=f"{base}/twilio/status")

        async def run() -> tuple[object, int | None]:
            await call.ring()
            outcome = await run_script(call, [Line("What are your opening hours?"),
                                              Line("Thank you, goodbye.")], max_s=90)
            return outcome, await call.status_callback("completed")

        outcome, status = asyncio.run(run())
        assert call.violations == []
        assert outcome.ended_by_agent and "<Hangup" in outcome.hangup_twiml[0]  # type: ignore[attr-defined]
        assert status is not None and 200 <= status < 300
        call_id = wait_completed(stack, "eu", call.call_sid)
        assert api_get(stack, "eu", f"/calls/{call_id}").json()["status"] == "completed"
        kinds = {e["kind"] for e in events_of(stack, "eu", call_id)}
        assert "call_status" in kinds, "the status callback reached the call's events"
