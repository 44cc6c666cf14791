"""CallRecorder: a stereo 8 kHz WAV with the caller left and the agent right, on the caller's timeline,
fed through RecordingTransport by the carrier's transport (here Twilio's), which alone reads the wire."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import wave
from typing import Any

import numpy as np

import media_core
from cells.call.recorder import CallRecorder, RecordingTransport
from cells.call.transport import AudioIn, MarkPlayed
from cells.contract.call_token import CallTokenAuthority
from cells.telephony.twilio_media import media_payload
from cells.telephony.twilio_ws import MediaSocketSettings, TwilioMediaSession

START = json.dumps({"event": "start", "streamSid": "MZ1", "start": {
    "streamSid": "MZ1", "callSid": "CA1", "accountSid": "AC1", "tracks": ["inbound"], "customParameters": {},
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def media(ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode()
    return json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}})


def tone(level: int) -> bytes:
    return media_core.ulaw_encode(np.full(160, level, np.int16))


def channels(wav: bytes) -> tuple[int, int, np.ndarray]:
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, w.getnchannels())
        return w.getnchannels(), w.getframerate(), pcm


class Socket:
    def __init__(self, inbound: list[str]) -> None:
        self.inbound, self.sent = list(inbound), []

    async def receive(self) -> str:
        if not self.inbound:
            raise ConnectionError("peer gone")
        return self.inbound.pop(0)

    async def send(self, data: str) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str = "") -> None:
        pass


def twilio(inbound: list[str]) -> tuple[TwilioMediaSession, Socket]:
    ws = Socket(inbound)
    t = TwilioMediaSession(ws, MediaSocketSettings(auth_token="", verify_signature=False),
                           CallTokenAuthority("x" * 32))
    t.protocol.parse(START)
    return t, ws


async def drain(rec: RecordingTransport, n: int) -> list[Any]:
    out = []
    events = rec.events()
    for _ in range(n):
        out.append(await anext(events))
    return out


def test_caller_left_agent_right_aligned_to_the_caller() -> None:
    async def run() -> CallRecorder:
        inner, ws = twilio([media(tone(1000))] * 10 + [json.dumps(
            {"event": "mark", "streamSid": "MZ1", "mark": {"name": "seg-1"}})] + [media(tone(1000))] * 5)
        rec = RecordingTransport(inner, CallRecorder())
        events = await drain(rec, 10)  # 200 ms of caller audio
        assert all(isinstance(e, AudioIn) for e in events)
        await rec.send_audio(media(tone(-3000)))  # the agent starts speaking at 200 ms
        await rec.send_mark("seg-1")
        assert isinstance((await drain(rec, 1))[0], MarkPlayed)
        await drain(rec, 5)
        assert json.loads(ws.sent[0])["streamSid"] == "MZ1"
        return rec.recorder

    rec = asyncio.run(run())
    n, rate, pcm = channels(rec.wav())
    assert (n, rate) == (2, 8000)
    assert len(pcm) == 15 * 160 and rec.duration_ms == 300
    assert abs(int(pcm[0, 0]) - 1000) < 64 and abs(int(pcm[0, 1])) < 8
    assert abs(int(pcm[10 * 160, 1]) + 3000) < 128, "the agent's frame sits where the caller was"
    assert abs(int(pcm[11 * 160, 1])) < 8


def test_a_clear_drops_agent_audio_queued_ahead_and_junk_is_ignored() -> None:
    async def run() -> CallRecorder:
        inner, ws = twilio([media(tone(500))])
        rec = RecordingTransport(inner, CallRecorder())
        await drain(rec, 1)
        for _ in range(5):  # queued ahead of real time
            await rec.send_audio(media(tone(2000)))
        await rec.send_clear()
        assert json.loads(ws.sent[-1]) == {"event": "clear", "streamSid": "MZ1"}
        for junk in ("not json", '{"event": "media"}', '{"event": "media", "media": {"payload": "@@"}}', "[]",
                     '{"event": "mark", "mark": {"name": "x"}}'):
            rec.recorder.caller_ulaw(inner.caller_ulaw(AudioIn(junk)))
            rec.recorder.agent_ulaw(inner.agent_ulaw(junk))
        return rec.recorder

    rec = asyncio.run(run())
    assert len(rec.agent) == len(rec.caller) == 160
    assert channels(CallRecorder().wav())[2].shape == (0, 2)


def test_media_payload_reads_only_media_messages() -> None:
    assert media_payload(media(b"\x01\x02")) == b"\x01\x02"
    assert media_payload('{"event": "media", "media": {"payload": "AQ=="}}') == b"\x01"
    assert media_payload('{"event": "dtmf", "media": {"payload": "AQ=="}}') == b""
    assert media_payload('{"event": "media", "media": {"payload": "A@=="}}') == b""
