"""The Twilio transport: the worker's end of a Media Streams WebSocket. Checks the upgrade, redeems
the call token, then turns the WebSocket into the call loop's carrier-neutral events
(cells.call.transport) and sends audio, marks and clears back as Twilio text frames. Its codec is
media_core's fused path (InboundPath / OutboundPath), which reads and writes Twilio's `media` JSON.

Twilio signs the WebSocket upgrade like a webhook: X-Twilio-Signature over the stream URL exactly as it
appeared in `<Stream url>` (our public URL, not what the proxy forwards) and no parameters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, NoReturn, Protocol, TypeVar

from quart import Blueprint, Response, websocket

import media_core
from cells.call.transport import AudioIn, CarrierEvent, DtmfIn, MarkPlayed, StreamStop
from cells.contract.call_token import CallClaims, CallTokenAuthority, CallTokenError
from cells.contract.twilio_signature import SETTINGS_HEADER, SIGNATURE_HEADER, TwilioSigning
from cells.telephony.twilio_media import (
    DEFAULT_MAX_FRAME_BYTES,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaStreamProtocol,
    ProtocolError,
    Start,
    Stop,
    media_payload,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# WebSocket close codes (RFC 6455)
NORMAL, UNSUPPORTED_DATA, POLICY_VIOLATION, TOO_BIG, INTERNAL_ERROR = 1000, 1003, 1008, 1009, 1011
_CLOSE_CODE = {"binary": UNSUPPORTED_DATA, "oversized": TOO_BIG}


class WebSocketLike(Protocol):
    """What the session needs from a WebSocket (Quart's `websocket` has these)."""

    async def receive(self) -> str | bytes: ...
    async def send(self, data: str) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


class StreamRejected(Exception):
    """The stream was refused and its socket closed. `reason` is safe to log."""

    def __init__(self, reason: str, code: int = POLICY_VIOLATION) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class StreamClosed(ConnectionError):
    """Sending on a stream that has been closed."""


@dataclass(frozen=True)
class MediaSocketSettings:
    auth_token: str = field(repr=False)  # the Twilio auth token that signs the upgrade
    shared_keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # or a shared key: id -> secret
    public_stream_url: str = ""  # this worker's stream URL as given to Twilio, e.g. wss://w3.eu.example/media
    audience: str = ""  # this worker's id, as the webhook used it for the token's audience
    token_parameter: str = "call_token"
    verify_signature: bool = True
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    start_timeout_s: float = 10.0  # Twilio sends `start` right after connecting
    max_bad_frames: int = 10  # non-fatal protocol errors tolerated on one stream before closing it
    # Local runs only (no public URL configured): also accept a signature over the URL as the upgrade
    # reached us (its Host header), as the voice webhook does (WebhookSettings.accept_request_host).
    accept_request_host: bool = False


def upgrade_is_signed(settings: MediaSocketSettings, signature: str | None,
                      signature_settings: str | None, requested_url: str | None = None) -> bool:
    """The upgrade request's X-Twilio-Signature (and signature settings) over the stream URL as given
    (or, with `accept_request_host`, over `requested_url`: the URL as the upgrade reached us)."""
    signing = TwilioSigning(settings.auth_token, settings.shared_keys)
    urls = [settings.public_stream_url]
    if settings.accept_request_host and requested_url:
        urls.append(requested_url)
    return any(signing.is_signed(url, {}, signature, signature_settings) for url in urls)


@dataclass(frozen=True)
class AcceptedStream(Generic[T]):
    start: Start
    claims: CallClaims
    call: T  # what `resolve_call` returned for this call


ResolveCall = Callable[[CallClaims, Start], Awaitable[T | None]]


class TwilioMediaSession:
    """One Twilio media stream on one WebSocket, as a cells.call.transport.Transport. Use `handshake`,
    then `events()` and the senders."""

    def __init__(self, ws: WebSocketLike, settings: MediaSocketSettings, tokens: CallTokenAuthority) -> None:
        self.ws = ws
        self.settings = settings
        self.tokens = tokens
        self.protocol = MediaStreamProtocol(max_frame_bytes=settings.max_frame_bytes)
        self.bad_frames = 0
        self.closed = False  # no more sending or receiving
        self.close_reason: str | None = None
        self._socket_closed = False

    @property
    def _label(self) -> str:
        start = self.protocol.start
        return f"stream {start.stream_sid} of call {start.call_sid}" if start else "unstarted stream"

    async def handshake(self, resolve_call: ResolveCall[T]) -> AcceptedStream[T]:
        """Wait for `start`, redeem its call token and resolve the call; raise StreamRejected (after
        closing the socket with the reason) if any of that fails."""
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                start = await self._await_start()
        except TimeoutError:
            await self._reject("no_start")
        token = start.custom_parameters.get(self.settings.token_parameter)
        if not token:
            await self._reject("missing_token")
        try:
            claims = await self.tokens.redeem(token, audience=self.settings.audience)
        except CallTokenError as exc:
            await self._reject(exc.reason)
        if claims.call_sid and claims.call_sid != start.call_sid:
            await self._reject("token_for_another_call")
        try:
            call = await resolve_call(claims, start)
        except Exception:
            log.exception("resolving call %s failed", claims.call_id)
            await self._reject("internal_error", INTERNAL_ERROR)
        if call is None:
            await self._reject("unknown_call")
        log.info("accepted %s (call id %s, tenant %s)", self._label, claims.call_id, claims.tenant_id)
        return AcceptedStream(start=start, claims=claims, call=call)

    async def _await_start(self) -> Start:
        while True:
            raw = await self.ws.receive()
            try:
                event = self.protocol.parse(raw)
            except ProtocolError as exc:
                await self._reject(exc.kind, _CLOSE_CODE.get(exc.kind, POLICY_VIOLATION))
            if isinstance(event, Start):
                return event
            if event is not None and not isinstance(event, Connected):
                await self._reject("before_start")

    async def _reject(self, reason: str, code: int = POLICY_VIOLATION) -> NoReturn:
        log.warning("rejected %s: %s", self._label, reason)
        await self.close(reason, code)
        raise StreamRejected(reason, code)

    async def events(self) -> AsyncIterator[CarrierEvent]:
        """Audio, DTMF, marks played and the final stop, in arrival order. Ends after `stop`, or after
        closing the socket on a protocol violation."""
        while not self.closed:
            raw = await self.ws.receive()
            try:
                event = self.protocol.parse(raw)
            except ProtocolError as exc:
                self.bad_frames += 1
                log.warning("%s: %s (%s)", self._label, exc.kind, exc)
                if exc.fatal or self.bad_frames > self.settings.max_bad_frames:
                    await self.close(exc.kind, _CLOSE_CODE.get(exc.kind, POLICY_VIOLATION))
                    return
                continue
            if event is None or isinstance(event, Connected | Start):
                continue  # unknown event (counted by the protocol); Connected/Start cannot recur here
            if isinstance(event, Media):
                yield AudioIn(event.raw)  # decoded by the inbound path, in Rust
            elif isinstance(event, Mark):
                yield MarkPlayed(event.name)
            elif isinstance(event, Dtmf):
                yield DtmfIn(event.digit)
            elif isinstance(event, Stop):
                self.closed, self.close_reason = True, "stop"
                yield StreamStop()
                return

    # -- the codec: media_core's fused path reads and writes `media` messages -----------------------
    def inbound_path(self, stt_rate: int, min_silence_ms: float,
                     neural: media_core.NeuralVad | None = None) -> media_core.InboundPath:
        return media_core.InboundPath(stt_rate=stt_rate, min_silence_ms=min_silence_ms,
                                      max_message_bytes=self.settings.max_frame_bytes, neural=neural)

    def outbound_path(self, tts_rate: int) -> media_core.OutboundPath:
        if self.protocol.stream_sid is None:
            raise RuntimeError("no streamSid yet: the outbound path needs a started stream")
        return media_core.OutboundPath(self.protocol.stream_sid, tts_rate=tts_rate)

    def caller_ulaw(self, audio: AudioIn) -> bytes:
        return media_payload(audio.data)

    def agent_ulaw(self, frame: str) -> bytes:
        return media_payload(frame)

    async def send(self, text: str) -> None:
        """One ready-made outbound text frame (media_core `media` messages, or anything else)."""
        if self.closed:
            raise StreamClosed(f"{self._label} is closed ({self.close_reason})")
        await self.ws.send(text)

    async def send_audio(self, frame: str) -> None:
        """One `media` message of the outbound path."""
        await self.send(frame)

    async def send_mark(self, name: str) -> None:
        """Twilio echoes the mark once the audio sent before it has played."""
        await self.send(self.protocol.mark_message(name))

    async def send_clear(self) -> None:
        """Barge-in: drop the audio Twilio still buffers (it then echoes every pending mark)."""
        await self.send(self.protocol.clear_message())

    async def close(self, reason: str = "", code: int = NORMAL) -> None:
        """Close the socket (`reason` is sent to Twilio and logged: keep secrets out of it)."""
        if self._socket_closed:
            return
        self._socket_closed = self.closed = True
        self.close_reason = self.close_reason or reason or "closed"
        try:
            await self.ws.close(code, reason)
        except Exception:  # the peer may be gone already; closing is best effort
            log.debug("closing %s failed", self._label, exc_info=True)


OnStream = Callable[[TwilioMediaSession, AcceptedStream[T]], Awaitable[None]]


def media_stream_blueprint(settings: MediaSocketSettings, *, tokens: CallTokenAuthority,
                           resolve_call: ResolveCall[T], on_stream: OnStream[T], path: str = "/media",
                           name: str = "twilio_media") -> Blueprint:
    """A Quart blueprint serving the media WebSocket at `path`: signature check on the upgrade, token
    handshake, then `on_stream(session, accepted)` runs the call. Failures affect this stream only."""
    if settings.verify_signature and not settings.public_stream_url:
        raise ValueError("MediaSocketSettings.public_stream_url is needed to check Twilio's signature")
    bp = Blueprint(name, __name__)

    @bp.websocket(path)
    async def media() -> Response | None:
        query = websocket.query_string.decode("latin-1")
        requested = f"{websocket.scheme}://{websocket.host}{websocket.path}" + (f"?{query}" if query else "")
        if settings.verify_signature and not upgrade_is_signed(
                settings, websocket.headers.get(SIGNATURE_HEADER), websocket.headers.get(SETTINGS_HEADER),
                requested):
            log.warning("refused a media stream upgrade with a bad Twilio signature")
            return Response("invalid Twilio signature", status=403)
        # The real object, not the context-local proxy, so the call loop may use it from any task.
        ws = websocket._get_current_object()  # type: ignore[attr-defined]
        session = TwilioMediaSession(ws, settings, tokens)
        try:
            accepted = await session.handshake(resolve_call)
        except StreamRejected:
            return None
        try:
            await on_stream(session, accepted)
        except Exception:
            log.exception("call %s failed", accepted.claims.call_id)
            await session.close("internal_error", INTERNAL_ERROR)
            return None
        await session.close("done")
        return None

    return bp
