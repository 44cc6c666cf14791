"""A call recording: caller on the left channel, agent on the right, 8 kHz 16-bit stereo WAV.

Both tracks stay in mu-law (one byte a sample) until the WAV is built, so ten minutes of call cost
about 10 MB. The caller's track is the timeline (Twilio sends 20 ms of inbound audio every 20 ms,
silence included); each agent frame is placed where the caller's track was when it was sent, or
right after the previous agent frame when frames were queued ahead (pacing runs a few frames early).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import wave
from typing import Any

import numpy as np

import media_core

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

    @staticmethod
    def _payload(message: str | bytes) -> tuple[str, bytes] | None:
        """(event, mu-law) of a Twilio media stream message; None for anything else."""
        try:
            msg: Any = json.loads(message)
            event = msg.get("event")
            if event == "clear":
                return "clear", b""
            if event != "media":
                return None
            return "media", base64.b64decode(msg["media"]["payload"])
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            return None

    def inbound_message(self, raw: str | bytes) -> None:
        got = self._payload(raw)
        if got and got[0] == "media":
            self.caller_ulaw(got[1])

    def outbound_message(self, text: str) -> None:
        got = self._payload(text)
        if got is None:
            return
        if got[0] == "clear":
            self.clear_agent_ahead()
        else:
            self.agent_ulaw(got[1])

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


class RecordingTransport:
    """Wraps a call's transport so that every agent frame sent is also recorded."""

    def __init__(self, inner: Any, recorder: CallRecorder) -> None:
        self.inner = inner
        self.recorder = recorder

    async def send(self, text: str) -> None:
        await self.inner.send(text)
        self.recorder.outbound_message(text)

    async def close(self, reason: str) -> None:
        await self.inner.close(reason)
