"""A second carrier, deliberately small: raw 16-bit PCM over a WebSocket (a browser, a test rig).

Wire format (ours, not a standard):
- in, text: first `{"event": "start", "call_token": ..., "call_sid": ..., "sample_rate": 8000|16000}`,
  then `{"event": "dtmf", "digit": "5"}`, `{"event": "played", "name": ...}` (the far end played up
  to that mark) and `{"event": "stop"}` (hang-up);
- in, binary: caller audio, mono s16le at the stream's rate (any length up to MAX_AUDIO_BYTES);
- out, binary: agent audio, 20 ms frames of mono s16le at the stream's rate;
- out, text: `{"event": "mark", "name": ...}` and `{"event": "clear"}` (drop queued audio).

The call token is the webhook's, redeemed as on a Twilio stream. A malformed message is logged and
counted (too many close the stream); nothing already received is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from quart import Blueprint, websocket

import media_core
from cells.call.transport import AudioIn, CarrierEvent, DtmfIn, MarkPlayed, StreamStop
from cells.contract.call_token import CallTokenAuthority, CallTokenError
from cells.telephony.twilio_ws import AcceptedStream, OnStream, ResolveCall, T

log = logging.getLogger(__name__)
RATES = (8000, 16000)
FRAME_S = 0.020
MAX_AUDIO_BYTES = 16000 * 2  # half a second at 16 kHz
MAX_CONTROL_BYTES = 4096
MAX_BAD_MESSAGES = 10
POLICY_VIOLATION = 1008


class PcmProtocolError(ValueError):
    """A message that breaks the PCM stream protocol; the text is safe to log."""


@dataclass(frozen=True, slots=True)
class PcmStart:
    stream_sid: str  # generated here: the call loop's stream id
    call_sid: str
    sample_rate: int
    call_token: str


def parse_start(message: str | bytes) -> PcmStart:
    control = parse_control(message)
    if control.get("event") != "start":
        raise PcmProtocolError("the first message must be `start`")
    rate, token, call_sid = control.get("sample_rate"), control.get("call_token"), control.get("call_sid")
    if rate not in RATES or type(rate) is not int:
        raise PcmProtocolError(f"`sample_rate` must be one of {RATES}")
    if not isinstance(token, str) or not token or not isinstance(call_sid, str) or not call_sid:
        raise PcmProtocolError("`start` needs a `call_token` and a `call_sid`")
    return PcmStart("PS" + uuid.uuid4().hex, call_sid[:64], rate, token)


def parse_control(message: str | bytes) -> dict[str, Any]:
    if not isinstance(message, str):
        raise PcmProtocolError("expected a text control message")
    if len(message) > MAX_CONTROL_BYTES:
        raise PcmProtocolError("control message too large")
    try:
        control = json.loads(message)
    except (ValueError, RecursionError):
        raise PcmProtocolError("control message is not JSON") from None
    if not isinstance(control, dict) or not isinstance(control.get("event"), str):
        raise PcmProtocolError("control message needs an `event`")
    return control


def control_event(message: str | bytes) -> CarrierEvent:
    """A text message after `start` -> its event (PcmProtocolError for anything else)."""
    control = parse_control(message)
    event, value = control["event"], control.get("digit", control.get("name"))
    if event == "stop":
        return StreamStop()
    if event == "dtmf" and isinstance(value, str) and len(value) == 1 and value in "0123456789*#ABCD":
        return DtmfIn(value)
    if event == "played" and isinstance(value, str) and value:
        return MarkPlayed(value)
    raise PcmProtocolError(f"unknown or malformed control event {str(event)[:32]!r}")


def _pcm(data: bytes) -> np.ndarray:
    if not isinstance(data, bytes | bytearray) or not data or len(data) % 2:
        raise PcmProtocolError("audio must be a non-empty binary message of 16-bit samples")
    if len(data) > MAX_AUDIO_BYTES:
        raise PcmProtocolError("audio message too large")
    return np.frombuffer(data, "<i2").astype(np.int16)


@dataclass(frozen=True, slots=True)
class PcmFrame:
    """The inbound path's output, shaped like media_core.InboundFrame."""

    pcm: np.ndarray
    probabilities: list[float]
    events: list[Any]
    speaking: bool
    track: str = "inbound"


class PcmInboundPath:
    """s16le at the stream's rate -> PCM at the STT rate + VAD (media_core's resampler and VAD)."""

    def __init__(self, rate: int, stt_rate: int, min_silence_ms: float,
                 neural: media_core.NeuralVad | None = None) -> None:
        self.stt_rate = stt_rate
        self._resampler = media_core.Resampler(rate, stt_rate) if rate != stt_rate else None
        self._vad = media_core.Vad(stt_rate, min_silence_ms=min_silence_ms, neural=neural)

    def push_message(self, message: Any) -> PcmFrame:
        pcm = _pcm(message)
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        vad = self._vad.process(pcm)
        return PcmFrame(pcm, list(vad.probabilities), list(vad.events), vad.speaking)


class PcmOutboundPath:
    """TTS PCM -> 20 ms s16le frames at the stream's rate."""

    def __init__(self, tts_rate: int, rate: int) -> None:
        self._tts_rate, self._rate = tts_rate, rate
        self._resampler = media_core.Resampler(tts_rate, rate)
        self._pending = np.zeros(0, np.int16)
        self._frame = int(rate * FRAME_S)

    def push(self, pcm: Any) -> list[bytes]:
        self._pending = np.concatenate([self._pending, self._resampler.process(np.asarray(pcm, np.int16))])
        return self._drain()

    def flush(self) -> list[bytes]:
        self._pending = np.concatenate([self._pending, self._resampler.flush()])
        pad = (-len(self._pending)) % self._frame
        self._pending = np.concatenate([self._pending, np.zeros(pad, np.int16)])
        return self._drain()

    def clear(self) -> None:
        self._pending = np.zeros(0, np.int16)
        self._resampler = media_core.Resampler(self._tts_rate, self._rate)

    def _drain(self) -> list[bytes]:
        n = len(self._pending) // self._frame
        f = self._frame
        frames = [self._pending[i * f:(i + 1) * f].astype("<i2").tobytes() for i in range(n)]
        self._pending = self._pending[n * self._frame:]
        return frames


class PcmTransport:
    """One PCM stream as a cells.call.transport.Transport."""

    def __init__(self, ws: Any, start: PcmStart) -> None:
        self.ws = ws
        self.start = start
        self.bad_messages = 0
        self.closed = False  # no more events
        self._socket_closed = False
        self._to_8k = {"caller": self._recorder_resampler(), "agent": self._recorder_resampler()}

    def _recorder_resampler(self) -> media_core.Resampler | None:
        return media_core.Resampler(self.start.sample_rate, 8000) if self.start.sample_rate != 8000 else None

    async def events(self) -> AsyncIterator[CarrierEvent]:
        while not self.closed:
            message = await self.ws.receive()
            try:
                event = AudioIn(bytes(message)) if not isinstance(message, str) else control_event(message)
            except PcmProtocolError as exc:
                self.bad_messages += 1
                log.warning("pcm stream %s: %s", self.start.stream_sid, exc)
                if self.bad_messages > MAX_BAD_MESSAGES:
                    await self.close("too_many_bad_messages", POLICY_VIOLATION)
                    return
                continue
            yield event
            if isinstance(event, StreamStop):
                self.closed = True
                return

    def inbound_path(self, stt_rate: int, min_silence_ms: float,
                     neural: media_core.NeuralVad | None = None) -> PcmInboundPath:
        return PcmInboundPath(self.start.sample_rate, stt_rate, min_silence_ms, neural)

    def outbound_path(self, tts_rate: int) -> PcmOutboundPath:
        return PcmOutboundPath(tts_rate, self.start.sample_rate)

    async def send_audio(self, frame: bytes) -> None:
        await self.ws.send(frame)

    async def send_mark(self, name: str) -> None:
        await self.ws.send(json.dumps({"event": "mark", "name": name}))

    async def send_clear(self) -> None:
        await self.ws.send(json.dumps({"event": "clear"}))

    async def close(self, reason: str = "", code: int = 1000) -> None:
        if self._socket_closed:
            return
        self._socket_closed = self.closed = True
        try:
            await self.ws.close(code, reason)
        except Exception:  # the peer may be gone already
            log.debug("closing pcm stream %s failed", self.start.stream_sid, exc_info=True)

    def caller_ulaw(self, audio: AudioIn) -> bytes:
        return self._ulaw(audio.data, "caller")

    def agent_ulaw(self, frame: bytes) -> bytes:
        return self._ulaw(frame, "agent")

    def _ulaw(self, data: Any, track: str) -> bytes:
        try:
            pcm = _pcm(data)
        except PcmProtocolError:
            return b""
        resampler = self._to_8k[track]
        return media_core.ulaw_encode(resampler.process(pcm) if resampler is not None else pcm)


async def _handshake(ws: Any, tokens: CallTokenAuthority, audience: str,
                     resolve_call: ResolveCall[T]) -> tuple[PcmTransport, AcceptedStream[T]] | None:
    try:
        async with asyncio.timeout(10.0):
            start = parse_start(await ws.receive())
        claims = await tokens.redeem(start.call_token, audience=audience)
    except (TimeoutError, PcmProtocolError, CallTokenError) as exc:
        reason = getattr(exc, "reason", None) or ("no_start" if isinstance(exc, TimeoutError) else str(exc))
        log.warning("rejected a pcm stream: %s", reason)
        await ws.close(POLICY_VIOLATION, reason[:120])
        return None
    if claims.call_sid and claims.call_sid != start.call_sid:
        await ws.close(POLICY_VIOLATION, "token_for_another_call")
        return None
    call = await resolve_call(claims, start)  # type: ignore[arg-type]  # reads claims only
    if call is None:
        await ws.close(POLICY_VIOLATION, "unknown_call")
        return None
    log.info("accepted pcm stream %s (call id %s)", start.stream_sid, claims.call_id)
    return PcmTransport(ws, start), AcceptedStream(start=start, claims=claims, call=call)  # type: ignore[arg-type]


def pcm_stream_blueprint(*, tokens: CallTokenAuthority, audience: str, resolve_call: ResolveCall[T],
                         on_stream: OnStream[T], path: str = "/pcm") -> Blueprint:
    """A Quart blueprint serving PCM streams at `path`; `on_stream(transport, accepted)` runs the call,
    as for a Twilio stream."""
    bp = Blueprint("pcm_media", __name__)

    @bp.websocket(path)
    async def pcm() -> None:
        ws = websocket._get_current_object()  # type: ignore[attr-defined]
        accepted = await _handshake(ws, tokens, audience, resolve_call)
        if accepted is None:
            return
        transport, stream = accepted
        try:
            await on_stream(transport, stream)  # type: ignore[arg-type]
        except Exception:
            log.exception("call %s failed", stream.claims.call_id)
            await transport.close("internal_error", 1011)
            return
        await transport.close("done")

    return bp
