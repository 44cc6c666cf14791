"""Doubles of Twilio (the vendor): its REST API (`server`) and the frames its Media Streams send.

Frame shapes follow twilio.com/docs/voice/media-streams/websocket-messages.
"""

from __future__ import annotations

import base64
import json
from typing import Any


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


class MediaStreamFrames:
    """Builds the frames Twilio sends on one media stream, with Twilio's sequence numbering."""

    def __init__(self, account_sid: str, call_sid: str, stream_sid: str) -> None:
        self.account_sid, self.call_sid, self.stream_sid = account_sid, call_sid, stream_sid
        self._seq = 0
        self._chunk = 0

    def _next(self) -> str:
        self._seq += 1
        return str(self._seq)

    def connected(self) -> str:
        return _dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: dict[str, str]) -> str:
        return _dump({"event": "start", "sequenceNumber": self._next(), "start": {
            "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": ["inbound"], "customParameters": custom_parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
            "streamSid": self.stream_sid})

    def media(self, ulaw: bytes = b"\xff" * 160) -> str:
        self._chunk += 1
        return _dump({"event": "media", "sequenceNumber": self._next(), "media": {
            "track": "inbound", "chunk": str(self._chunk), "timestamp": str(20 * (self._chunk - 1)),
            "payload": base64.b64encode(ulaw).decode()}, "streamSid": self.stream_sid})

    def mark(self, name: str) -> str:
        return _dump({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                      "mark": {"name": name}})

    def dtmf(self, digit: str) -> str:
        return _dump({"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": self._next(),
                      "dtmf": {"track": "inbound_track", "digit": digit}})

    def stop(self) -> str:
        return _dump({"event": "stop", "sequenceNumber": self._next(),
                      "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                      "streamSid": self.stream_sid})
