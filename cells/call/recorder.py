"""A call recording: caller on the left channel, agent on the right, 8 kHz 16-bit stereo WAV.

Both tracks stay in mu-law (one byte a sample) until the WAV is built, so ten minutes of call cost
about 10 MB. The caller's track is the timeline (carriers send 20 ms of inbound audio every 20 ms,
silence included); each agent frame is placed where the caller's track was when it was sent, or
right after the previous agent frame when frames were queued ahead (pacing runs a few frames early).
Audio comes in as 8 kHz mu-law from the call's transport, whatever the carrier's own format.

Card capture never reaches the file: while `paused` (the caller is keying digits) both tracks get
silence instead of audio, and `silence` blanks a span already held (a card the recogniser heard) before
anything is written. `position_at` maps a clock reading to the caller's track, for spans that the call
loop reports in its own time.
"""

from __future__ import annotations

import bisect
import io
import time
import wave
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

import media_core
from cells.call.transport import AudioIn, CarrierEvent, DtmfIn, Transport, TransportProxy

RATE = 8000
MAX_SECONDS = 3 * 3600  # a runaway stream must not exhaust memory; later audio is not recorded
SILENCE = 0xFF  # mu-law zero
_MARK_EVERY_S = 0.1  # clock -> caller track samples kept (a 3 h call: ~100k of them)


class CallRecorder:
    def __init__(self, max_seconds: float = MAX_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.caller = bytearray()
        self.agent = bytearray()
        self.max_bytes = int(max_seconds * RATE)
        self.paused = False
        self.clock = clock
        self._times: list[float] = []
        self._positions: list[int] = []

    def caller_ulaw(self, ulaw: bytes) -> None:
        if len(self.caller) < self.max_bytes:
            now = self.clock()
            if not self._times or now - self._times[-1] >= _MARK_EVERY_S:
                self._times.append(now)
                self._positions.append(len(self.caller))
            self.caller += bytes([SILENCE]) * len(ulaw) if self.paused else ulaw

    def agent_ulaw(self, ulaw: bytes) -> None:
        at = max(len(self.caller), len(self.agent))
        if at >= self.max_bytes:
            return
        if at > len(self.agent):
            self.agent += bytes([SILENCE]) * (at - len(self.agent))
        self.agent += bytes([SILENCE]) * len(ulaw) if self.paused else ulaw

    @property
    def position(self) -> int:
        """Where the caller's track is now (bytes = samples)."""
        return len(self.caller)

    def position_at(self, at: float) -> int:
        """The caller's track position at clock reading `at` (interpolated between samples)."""
        i = bisect.bisect_right(self._times, at)
        if i == 0:
            return 0
        t, p = self._times[i - 1], self._positions[i - 1]
        later = self._positions[i] if i < len(self._positions) else len(self.caller)
        return min(later, p + max(0, int((at - t) * RATE)))

    def discard(self) -> None:
        """Keep nothing from here on (the caller refused the recording)."""
        self.caller.clear()
        self.agent.clear()
        self.max_bytes = 0

    def silence(self, start: int, end: int) -> None:
        """Blank [start, end) on both tracks (samples), as far as each track reaches."""
        start = max(0, start)
        for track in (self.caller, self.agent):
            stop = min(end, len(track))
            if stop > start:
                track[start:stop] = bytes([SILENCE]) * (stop - start)

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

    def __init__(self, inner: Transport, recorder: CallRecorder,
                 on_dtmf: Callable[[], None] | None = None) -> None:
        super().__init__(inner)
        self.recorder = recorder
        self.on_dtmf = on_dtmf  # the caller keys a digit: its tone must not stay in the recording

    async def events(self) -> AsyncIterator[CarrierEvent]:
        async for event in self.inner.events():
            if isinstance(event, AudioIn):
                self.recorder.caller_ulaw(self.inner.caller_ulaw(event))
            elif isinstance(event, DtmfIn) and self.on_dtmf is not None:
                self.on_dtmf()
            yield event

    async def send_audio(self, frame: Any) -> None:
        await self.inner.send_audio(frame)
        self.recorder.agent_ulaw(self.inner.agent_ulaw(frame))

    async def send_clear(self) -> None:
        await self.inner.send_clear()
        self.recorder.clear_agent_ahead()
