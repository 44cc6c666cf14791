"""The Twilio Media Streams wire protocol, isolated and I/O-free.

Inbound (Twilio -> us), text frames only: `connected`, `start`, `media`, `dtmf`, `mark`, `stop`.
Outbound (us -> Twilio): `media` (built by media_core.OutboundPath), `mark` and `clear` (built here).
Only the Twilio transport (cells.telephony.twilio_ws) uses this module; the call loop sees neutral events.

`media` arrives 50 times a second per call, so it is recognised by a prefix match and handed on as raw
text: media_core's fused inbound path parses and validates it in Rust. Every other event is parsed and
checked against Twilio's published message shapes here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

DEFAULT_MAX_FRAME_BYTES = 64 * 1024
# Twilio serialises `event` first; an anchored match only looks at the frame's first few bytes.
_MEDIA_PREFIX = re.compile(r'\{\s*"event"\s*:\s*"media"')
_DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")
_SID = re.compile(r"[A-Za-z0-9]{2,64}")

ErrorKind = Literal["binary", "oversized", "malformed", "before_start", "duplicate_start",
                    "after_stop", "wrong_stream"]


class ProtocolError(ValueError):
    """A frame that breaks the protocol. `kind` is stable and safe to log; `fatal` means the peer is not
    behaving like Twilio at all and the stream should be closed."""

    def __init__(self, kind: ErrorKind, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.fatal = fatal


# --- inbound events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str  # "audio/x-mulaw" on Twilio
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str]
    media_format: MediaFormat


@dataclass(frozen=True, slots=True)
class Media:
    raw: str  # the whole frame, for media_core.InboundPath.push_message


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    track: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    account_sid: str
    call_sid: str


Event = Connected | Start | Media | Dtmf | Mark | Stop


class StreamState(Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


# --- field checks -----------------------------------------------------------------------------------


def _obj(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise ProtocolError("malformed", f"`{key}` must be an object")
    return value


def _str(parent: Mapping[str, Any], key: str, *, where: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError("malformed", f"`{where}.{key}` must be a non-empty string")
    return value


def _sid(parent: Mapping[str, Any], key: str, prefix: str, *, where: str) -> str:
    value = _str(parent, key, where=where)
    if not value.startswith(prefix) or not _SID.fullmatch(value):
        raise ProtocolError("malformed", f"`{where}.{key}` is not a {prefix}... sid")
    return value


def _int(parent: Mapping[str, Any], key: str, *, where: str) -> int:
    value = parent.get(key)
    if type(value) is not int or value <= 0:
        raise ProtocolError("malformed", f"`{where}.{key}` must be a positive integer")
    return value


# --- the protocol state machine ---------------------------------------------------------------------


@dataclass
class MediaStreamProtocol:
    """Parses one stream's inbound frames in order and builds its outbound control messages."""

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    state: StreamState = StreamState.AWAITING_START
    start: Start | None = None
    unknown_events: Counter[str] = field(default_factory=Counter)
    media_frames: int = 0

    @property
    def stream_sid(self) -> str | None:
        return self.start.stream_sid if self.start else None

    def parse(self, frame: str | bytes | bytearray) -> Event | None:
        """One inbound frame -> its event, or None for an unknown event (counted in `unknown_events`).

        Raises ProtocolError for anything Twilio would never send.
        """
        if not isinstance(frame, str):
            raise ProtocolError("binary", "binary frames are not part of the Media Streams protocol",
                                fatal=True)
        # len() is O(1); the byte count is only computed when non-ASCII text could exceed the limit.
        if len(frame) > self.max_frame_bytes or (
                len(frame) * 4 > self.max_frame_bytes and len(frame.encode("utf-8")) > self.max_frame_bytes):
            raise ProtocolError("oversized", f"frame larger than {self.max_frame_bytes} bytes", fatal=True)
        if _MEDIA_PREFIX.match(frame):
            return self._media(frame)
        try:
            message = json.loads(frame)
        except (json.JSONDecodeError, RecursionError):
            raise ProtocolError("malformed", "frame is not JSON") from None
        if not isinstance(message, dict):
            raise ProtocolError("malformed", "frame is not a JSON object")
        event = message.get("event")
        if not isinstance(event, str):
            raise ProtocolError("malformed", "frame has no `event`")
        handler = _HANDLERS.get(event)
        if handler is None:
            self.unknown_events[event[:32]] += 1
            return None
        return handler(self, frame, message)

    # Each handler receives the raw frame and its decoded JSON.

    def _media(self, frame: str, message: Mapping[str, Any] | None = None) -> Media:
        self._require_streaming("media")
        self.media_frames += 1
        return Media(frame)

    def _connected(self, frame: str, message: Mapping[str, Any]) -> Connected:
        if self.state is not StreamState.AWAITING_START:
            raise ProtocolError("duplicate_start", "`connected` after the stream started", fatal=True)
        return Connected(protocol=_str(message, "protocol", where="connected"),
                         version=_str(message, "version", where="connected"))

    def _start(self, frame: str, message: Mapping[str, Any]) -> Start:
        if self.state is not StreamState.AWAITING_START:
            raise ProtocolError("duplicate_start", "a second `start` on the same stream", fatal=True)
        body = _obj(message, "start")
        fmt = _obj(body, "mediaFormat")
        tracks = body.get("tracks")
        if not isinstance(tracks, list) or not tracks or not all(isinstance(t, str) for t in tracks):
            raise ProtocolError("malformed", "`start.tracks` must be a non-empty list of strings")
        params = body.get("customParameters", {})
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise ProtocolError("malformed", "`start.customParameters` must map names to strings")
        stream_sid = _sid(body, "streamSid", "MZ", where="start")
        if message.get("streamSid", stream_sid) != stream_sid:
            raise ProtocolError("malformed", "`streamSid` differs from `start.streamSid`")
        start = Start(
            stream_sid=stream_sid,
            call_sid=_sid(body, "callSid", "CA", where="start"),
            account_sid=_sid(body, "accountSid", "AC", where="start"),
            tracks=tuple(tracks),
            custom_parameters=dict(params),
            media_format=MediaFormat(encoding=_str(fmt, "encoding", where="start.mediaFormat"),
                                     sample_rate=_int(fmt, "sampleRate", where="start.mediaFormat"),
                                     channels=_int(fmt, "channels", where="start.mediaFormat")),
        )
        self.start, self.state = start, StreamState.STREAMING
        return start

    def _dtmf(self, frame: str, message: Mapping[str, Any]) -> Dtmf:
        self._require_streaming("dtmf", message)
        body = _obj(message, "dtmf")
        digit = _str(body, "digit", where="dtmf")
        if len(digit) != 1 or digit not in _DTMF_DIGITS:
            raise ProtocolError("malformed", "`dtmf.digit` must be one of 0-9 * # A-D")
        track = body.get("track")
        return Dtmf(digit=digit, track=track if isinstance(track, str) else "")

    def _mark(self, frame: str, message: Mapping[str, Any]) -> Mark:
        self._require_streaming("mark", message)
        return Mark(name=_str(_obj(message, "mark"), "name", where="mark"))

    def _stop(self, frame: str, message: Mapping[str, Any]) -> Stop:
        self._require_streaming("stop", message)
        body = _obj(message, "stop")
        stop = Stop(account_sid=_sid(body, "accountSid", "AC", where="stop"),
                    call_sid=_sid(body, "callSid", "CA", where="stop"))
        self.state = StreamState.STOPPED
        return stop

    def _require_streaming(self, event: str, message: Mapping[str, Any] | None = None) -> None:
        if self.state is StreamState.AWAITING_START:
            raise ProtocolError("before_start", f"`{event}` before `start`", fatal=True)
        if self.state is StreamState.STOPPED:
            raise ProtocolError("after_stop", f"`{event}` after `stop`")
        if message is not None and message.get("streamSid") != self.stream_sid:
            raise ProtocolError("wrong_stream", f"`{event}` names another streamSid")

    # --- outbound ---

    def mark_message(self, name: str) -> str:
        """Ask Twilio to echo `name` once the audio sent before it has been played."""
        if not name:
            raise ValueError("a mark needs a name")
        return json.dumps({"event": "mark", "streamSid": self._sid_for_send(), "mark": {"name": name}},
                          separators=(",", ":"))

    def clear_message(self) -> str:
        """Drop all buffered audio on Twilio's side (barge-in); Twilio then echoes every pending mark."""
        return json.dumps({"event": "clear", "streamSid": self._sid_for_send()}, separators=(",", ":"))

    def _sid_for_send(self) -> str:
        if self.stream_sid is None:
            raise RuntimeError("no streamSid yet: outbound messages need a started stream")
        return self.stream_sid


_HANDLERS: dict[str, Callable[[MediaStreamProtocol, str, Mapping[str, Any]], Event]] = {
    "connected": MediaStreamProtocol._connected,
    "start": MediaStreamProtocol._start,
    "media": MediaStreamProtocol._media,
    "dtmf": MediaStreamProtocol._dtmf,
    "mark": MediaStreamProtocol._mark,
    "stop": MediaStreamProtocol._stop,
}


# --- recording: the audio of a `media` message --------------------------------------------------


def media_payload(frame: str | bytes) -> bytes:
    """The mu-law audio of a `media` message (ours or Twilio's); b"" for anything else or malformed."""
    try:
        message = json.loads(frame)
        return base64.b64decode(message["media"]["payload"], validate=True) if (
            message.get("event") == "media") else b""
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return b""
