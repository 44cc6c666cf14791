"""What a call loop needs from a carrier, whatever the carrier is (Twilio Media Streams, raw PCM over a
WebSocket, SIP/RTP later).

In: `AudioIn` (one carrier audio message, decoded by the transport's own inbound path), `DtmfIn`,
`MarkPlayed` (the far end reached a mark in playback) and `StreamStop` (the carrier ended the stream).
Out: audio frames made by the transport's outbound path, marks and `clear` (drop queued audio).
The wire format of each carrier lives only in its transport: adding a carrier means adding one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import media_core


@dataclass(frozen=True, slots=True)
class AudioIn:
    data: str | bytes  # one carrier message; only the transport's inbound path reads it


@dataclass(frozen=True, slots=True)
class DtmfIn:
    digit: str


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    name: str


@dataclass(frozen=True, slots=True)
class StreamStop:
    """The carrier ended the stream on purpose (the caller hung up), not a dropped socket."""


CarrierEvent = AudioIn | DtmfIn | MarkPlayed | StreamStop


class InboundFrame(Protocol):
    """Caller audio at the recogniser's rate with its VAD results (media_core.InboundFrame's shape)."""

    @property
    def pcm(self) -> Any: ...
    @property
    def probabilities(self) -> Sequence[float]: ...
    @property
    def events(self) -> Sequence[Any]: ...  # media_core.VadEvent: kind "start"/"end", time_ms
    @property
    def speaking(self) -> bool: ...
    @property
    def track(self) -> str: ...


class InboundPath(Protocol):
    """Carrier audio message -> PCM at `stt_rate` + VAD, in one call. Raises ValueError (media_core's
    MediaError is one) for a malformed message; None for a valid message that carries no audio."""

    @property
    def stt_rate(self) -> int: ...
    def push_message(self, message: Any) -> InboundFrame | None: ...


class OutboundPath(Protocol):
    """Agent PCM at the TTS rate -> ready-to-send 20 ms frames in the carrier's format."""

    def push(self, pcm: Any) -> list[Any]: ...
    def flush(self) -> list[Any]: ...
    def clear(self) -> None: ...


class Transport(Protocol):
    """One media stream of one call, seen from the call loop."""

    # `neural`: the Silero weights for the VAD's second stage (None: the gate + earshot).
    def inbound_path(self, stt_rate: int, min_silence_ms: float,
                     neural: media_core.NeuralVad | None = None) -> InboundPath: ...
    def outbound_path(self, tts_rate: int) -> OutboundPath: ...
    def events(self) -> AsyncIterator[CarrierEvent]: ...
    async def send_audio(self, frame: Any) -> None: ...
    async def send_mark(self, name: str) -> None: ...
    async def send_clear(self) -> None: ...
    async def close(self, reason: str) -> None: ...
    # 8 kHz mu-law of an inbound message or an outbound frame, for the call recording (b"" for none).
    def caller_ulaw(self, audio: AudioIn) -> bytes: ...
    def agent_ulaw(self, frame: Any) -> bytes: ...


class TransportProxy:
    """Forwards everything to `inner`; subclasses override what they add (recording, close hooks)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    def inbound_path(self, stt_rate: int, min_silence_ms: float,
                     neural: media_core.NeuralVad | None = None) -> InboundPath:
        return self.inner.inbound_path(stt_rate, min_silence_ms, neural)

    def outbound_path(self, tts_rate: int) -> OutboundPath:
        return self.inner.outbound_path(tts_rate)

    def events(self) -> AsyncIterator[CarrierEvent]:
        return self.inner.events()

    async def send_audio(self, frame: Any) -> None:
        await self.inner.send_audio(frame)

    async def send_mark(self, name: str) -> None:
        await self.inner.send_mark(name)

    async def send_clear(self) -> None:
        await self.inner.send_clear()

    async def close(self, reason: str) -> None:
        await self.inner.close(reason)

    def caller_ulaw(self, audio: AudioIn) -> bytes:
        return self.inner.caller_ulaw(audio)

    def agent_ulaw(self, frame: Any) -> bytes:
        return self.inner.agent_ulaw(frame)
