"""A call recording: caller on the left channel, agent on the right, 8 kHz 16-bit stereo WAV.

Both tracks stay in mu-law (one byte a sample) until the WAV is built, so ten minutes of call cost
about 10 MB. The caller's track is the timeline (carriers send 20 ms of inbound audio every 20 ms,
silence included); each agent frame is placed where the caller's track was when it was sent, or
right after the previous agent frame when frames were queued ahead (pacing runs a few frames early).
Audio comes in as 8 kHz mu-law from the call's transport, whatever the carrier's own format.
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

import media_core
from cells.call.transport import AudioIn, CarrierEvent, Transport, TransportProxy

RATE = 8000
MAX_SECONDS = 3 * 3600  # a runaway stream must not exhaust memory; later audio is not recorded


class CallRecorder:
    def __init__(self, max_seconds: float = MAX_SECONDS) -> None:
        self.caller = bytearray()
        self.agent = bytearray()
        self.max_bytes = int(max_seconds * RATE)

    def caller_ulaw(self, ulaw: bytes) -> None:
        if len(self.caller) < self.max_bytes:
            self.caller += ulaw

    def agent_ulaw(self, ulaw: bytes) -> None:
        at = max(len(self.caller), len(self.agent))
        if at >= self.max_bytes:
            return
        if at > len(self.agent):
            self.agent += b"\xff" * (at - len(self.agent))  # mu-law silence
        self.agent += ulaw

    def clear_agent_ahead(self) -> None:
        """A barge-in `clear`: frames queued ahead of the caller's timeline were never played."""
        if len(self.agent) > len(self.caller):
            del self.agent[len(self.caller):]

    @property
    def duration_ms(self) -> int:
        return round(1000 * max(len(self.caller), len(self.agent)) / RATE)

    def wav(self) -> bytes:
        n = max(len(self.caller), len(self.agent))
        left = bytes(self.caller) + b"\xff" * (n - len(self.caller))
        right = bytes(self.agent) + b"\xff" * (n - len(self.agent))
        stereo = np.empty(2 * n, np.int16)
        if n:
            stereo[0::2] = media_core.ulaw_decode(left)
            stereo[1::2] = media_core.ulaw_decode(right)
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(stereo.tobytes())
        return out.getvalue()


class RecordingTransport(TransportProxy):
    """A call's transport that records the caller's audio as it arrives and the agent's as it is sent
    (the transport says what each message sounds like; the recorder never reads a wire format)."""

    def __init__(self, inner: Transport, recorder: CallRecorder) -> None:
        super().__init__(inner)
        self.recorder = recorder

    async def events(self) -> AsyncIterator[CarrierEvent]:
        async for event in self.inner.events():
            if isinstance(event, AudioIn):
                self.recorder.caller_ulaw(self.inner.caller_ulaw(event))
            yield event

    async def send_audio(self, frame: Any) -> None:
        await self.inner.send_audio(frame)
        self.recorder.agent_ulaw(self.inner.agent_ulaw(frame))

    async def send_clear(self) -> None:
        await self.inner.send_clear()
        self.recorder.clear_agent_ahead()
