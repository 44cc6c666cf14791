"""Drives a CallSession in-process as the carrier would: real caller audio as Twilio media
messages every 20 ms, and a phone that plays the agent's audio at real-time speed and echoes
marks when playback reaches them (all pending marks at once after a `clear`)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import numpy as np

import media_core
from cells.call.session import CallSession
from cells.contract.call_token import CallTokenAuthority
from cells.speech import espeak_fresh
from cells.speech.espeak import EspeakEngine
from cells.telephony.twilio_ws import MediaSocketSettings, TwilioMediaSession

FRAME_S = 0.02
_ENGINE: EspeakEngine | None = None


def speech_frames(text: str, voice: str = "en-us") -> list[bytes]:
    """The text spoken by eSpeak NG as 20 ms mu-law frames at 8 kHz, the same samples in every run."""
    global _ENGINE
    _ENGINE = _ENGINE or EspeakEngine()
    pcm = espeak_fresh.synthesize(text, voice=voice)
    r = media_core.Resampler(_ENGINE.sample_rate, 8000)
    pcm8 = np.concatenate([r.process(pcm), r.flush()])
    pcm8 = np.concatenate([pcm8, np.zeros((-len(pcm8)) % 160, np.int16)])
    data = media_core.ulaw_encode(pcm8)
    return [data[i:i + 160] for i in range(0, len(data), 160)]


def noise_frames(seconds: float, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    n = int(seconds / FRAME_S)
    return [media_core.ulaw_encode(rng.normal(0, 25, 160).astype(np.int16)) for _ in range(n)]


def media_message(frame: bytes, seq: int) -> str:
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": "MZtest",
                       "media": {"track": "inbound", "chunk": str(seq), "timestamp": str(seq * 20),
                                 "payload": base64.b64encode(frame).decode()}})


def _start_frame() -> str:
    return json.dumps({"event": "start", "streamSid": "MZtest", "start": {
        "streamSid": "MZtest", "callSid": "CAtest", "accountSid": "ACtest", "tracks": ["inbound"],
        "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                "channels": 1}}})


class Phone(TwilioMediaSession):
    """The Twilio transport on a started stream whose far end is a phone: it records what the agent
    sends (Twilio's JSON) and plays it back in real time."""

    def __init__(self) -> None:
        super().__init__(None, MediaSocketSettings(auth_token="", verify_signature=False),
                         CallTokenAuthority("harness" * 8))
        self.protocol.parse(_start_frame())
        self.sent: list[dict[str, Any]] = []
        self.closed: str | None = None  # type: ignore[assignment]  # the close reason, unlike the base's flag
        self.session: CallSession | None = None
        self._play_until = 0.0
        self._pending: list[asyncio.TimerHandle] = []
        self._pending_names: list[str] = []

    async def send(self, text: str) -> None:  # every sender of the transport ends here
        msg = json.loads(text)
        self.sent.append(msg)
        now = time.monotonic()
        if msg["event"] == "media":
            self._play_until = max(self._play_until, now) + FRAME_S
        elif msg["event"] == "mark":
            name = msg["mark"]["name"]
            handle = asyncio.get_running_loop().call_later(
                max(0.0, self._play_until - now), self._echo, name)
            self._pending.append(handle)
            self._pending_names.append(name)
        elif msg["event"] == "clear":
            for handle in self._pending:
                handle.cancel()
            names, self._pending, self._pending_names = self._pending_names, [], []
            self._play_until = now
            for name in names:
                self._echo(name)

    def _echo(self, name: str) -> None:
        if name in self._pending_names:
            self._pending_names.remove(name)
        if self.session is not None and not self.session.state.ended:
            self.session.on_mark(name)

    async def close(self, reason: str = "", code: int = 1000) -> None:
        self.closed = reason

    def count(self, event: str) -> int:
        return sum(1 for m in self.sent if m["event"] == event)


async def stream(session: CallSession, frames: list[bytes], start_seq: int = 0) -> int:
    """Sends frames at real-time pace; returns the next sequence number."""
    t0 = time.monotonic()
    for i, frame in enumerate(frames):
        if session.state.ended:
            break
        session.on_media(media_message(frame, start_seq + i))
        await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_S - time.monotonic()))
    return start_seq + len(frames)


async def wait_for(predicate: Any, timeout: float, session: CallSession | None = None,
                   seq: int = 0) -> int:
    """Keeps line noise flowing (as a real line does) until `predicate()` or the timeout."""
    deadline = time.monotonic() + timeout
    noise = noise_frames(timeout + 1, seed=seq)
    i = 0
    while not predicate() and time.monotonic() < deadline:
        if session is not None and not session.state.ended:
            session.on_media(media_message(noise[i % len(noise)], seq + i))
            i += 1
        await asyncio.sleep(FRAME_S)
    return seq + i
