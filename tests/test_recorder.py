"""CallRecorder: a stereo 8 kHz WAV with the caller left and the agent right, on the caller's timeline."""

from __future__ import annotations

import base64
import io
import json
import wave

import numpy as np

import media_core
from cells.call.recorder import CallRecorder


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


def test_caller_left_agent_right_aligned_to_the_caller() -> None:
    rec = CallRecorder()
    for _ in range(10):  # 200 ms of caller audio
        rec.inbound_message(media(tone(1000)))
    rec.outbound_message(media(tone(-3000)))  # the agent starts speaking at 200 ms
    rec.outbound_message(json.dumps({"event": "mark", "mark": {"name": "seg-1"}}))
    for _ in range(5):
        rec.inbound_message(media(tone(1000)))
    n, rate, pcm = channels(rec.wav())
    assert (n, rate) == (2, 8000)
    assert len(pcm) == 15 * 160 and rec.duration_ms == 300
    assert abs(int(pcm[0, 0]) - 1000) < 64 and abs(int(pcm[0, 1])) < 8
    assert abs(int(pcm[10 * 160, 1]) + 3000) < 128, "the agent's frame sits where the caller was"
    assert abs(int(pcm[11 * 160, 1])) < 8


def test_a_clear_drops_agent_audio_queued_ahead_and_junk_is_ignored() -> None:
    rec = CallRecorder()
    rec.inbound_message(media(tone(500)))
    for _ in range(5):  # queued ahead of real time
        rec.outbound_message(media(tone(2000)))
    rec.outbound_message(json.dumps({"event": "clear", "streamSid": "MZ1"}))
    for junk in ("not json", '{"event": "media"}', '{"event": "media", "media": {"payload": "@@"}}', "[]"):
        rec.inbound_message(junk)
        rec.outbound_message(junk)
    assert len(rec.agent) == len(rec.caller) == 160
    assert channels(CallRecorder().wav())[2].shape == (0, 2)
