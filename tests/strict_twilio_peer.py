"""A Twilio peer written from Twilio's published documentation alone, to test our side against the
protocol rather than against our own simulator's reading of it (cells/simulator shares our assumptions;
nothing here imports it, nor our protocol code or media core).

What it does, as the docs describe Twilio:
- Voice webhook: a form-encoded POST of the standard call parameters, signed with X-Twilio-Signature
  (HMAC-SHA1 with the auth token over the exact URL requested followed by each POST parameter, sorted by
  name, as name + value; base64). The answer must be TwiML; `<Connect><Stream url>` (absolute or relative
  to the webhook URL) with its `<Parameter>`s is followed.
- Media Streams: the upgrade request is signed over the stream URL (no parameters); then `connected`,
  `start` (streamSid, accountSid, callSid, tracks, customParameters, mediaFormat), `media` (base64 mu-law
  8 kHz; track, chunk, timestamp and sequenceNumber as strings) paced in real time, `dtmf`, `mark` echoed
  when the audio sent before it has played (or at once when a `clear` drops it), `stop`.
- Every message the application sends is checked against the documented shapes (`media`, `mark`,
  `clear`, nothing else, exact keys, our streamSid); each departure is recorded in `violations`.
- When the application closes the stream while the call is up, `<Connect action>` is requested (signed,
  CallStatus in-progress) and its TwiML followed; the call's end is reported to the status callback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FRAME_S = 0.020
RATE = 8000
ULAW_SILENCE = 0xFF
# One outbound `media` payload: the docs set no size; more than a few seconds per message would be odd.
MAX_PAYLOAD_BYTES = RATE * 5


# --- G.711 mu-law (ITU-T G.711, the formula, not a table) -------------------------------------------

def ulaw_encode(pcm: np.ndarray) -> bytes:
    x = np.clip(pcm.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0x00)
    mag = np.abs(x) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    mag = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def to_8k(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Band-limit to telephone bandwidth and resample to 8 kHz (windowed-sinc low-pass, then linear)."""
    x = pcm.astype(np.float64)
    if rate != RATE:
        cutoff = 3400.0 / rate
        taps = np.arange(-64, 65)
        h = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
        x = np.convolve(x, h / h.sum(), mode="same")
        t = np.arange(0, len(x) / rate, 1 / RATE)
        x = np.interp(t, np.arange(len(x)) / rate, x)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


# --- webhook signatures, as Twilio's security page describes them -------------------------------

def twilio_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    data = url + "".join(name + (params or {})[name] for name in sorted(params or {}))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class StreamTwiml:
    url: str
    parameters: dict[str, str]
    action: str | None
    method: str


def read_twiml(body: str, base_url: str) -> StreamTwiml | None:
    """The `<Connect><Stream>` of a TwiML document (None when it has none); raises on non-TwiML."""
    root = ET.fromstring(body)
    if root.tag != "Response":
        raise ValueError(f"TwiML root must be <Response>, got <{root.tag}>")
    connect_el = root.find("Connect")
    if connect_el is None:
        return None
    stream = connect_el.find("Stream")
    if stream is None or not stream.get("url"):
        raise ValueError("<Connect> without <Stream url>")
    url = urllib.parse.urljoin(base_url, stream.get("url", ""))
    if urllib.parse.urlsplit(url).query:
        raise ValueError("Twilio does not support a query string in <Stream url>")
    params: dict[str, str] = {}
    for p in stream.findall("Parameter"):
        name, value = p.get("name"), p.get("value")
        if not name or value is None:
            raise ValueError("<Parameter> needs name and value")
        params[name] = value
    action = connect_el.get("action")
    return StreamTwiml(url, params, urllib.parse.urljoin(base_url, action) if action else None,
                       (connect_el.get("method") or "POST").upper())


# --- the phone: what the application sends is played in real time ---------------------------------

@dataclass
class Phone:
    queue: deque[tuple[str, bytes | str]] = field(default_factory=deque)
    played: bytearray = field(default_factory=bytearray)  # agent audio, 8 kHz mu-law, in play order
    audio_played_at: list[float] = field(default_factory=list)  # monotonic time of each 20 ms played
    received_at: list[float] = field(default_factory=list)  # of each `media` message
    marks_sent: list[str] = field(default_factory=list)  # names the application sent
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0

    def has_audio(self) -> bool:
        return any(kind == "media" for kind, _ in self.queue)

    def quiet_for(self) -> float:
        if self.has_audio():
            return 0.0
        return time.monotonic() - self.audio_played_at[-1] if self.audio_played_at else float("inf")


class StrictTwilioCall:
    """One inbound call as Twilio places it. `webhook_url` is the number's voice URL, `status_url` its
    status callback (optional). Variants: `chunk_ms` of caller audio per `media` message; `echo_marks`
    False never echoes a mark (a peer the docs do not promise, to check nothing waits on one)."""

    def __init__(self, webhook_url: str, auth_token: str, *, to: str, from_: str = "+14155550143",
                 status_url: str | None = None, chunk_ms: int = 20, echo_marks: bool = True,
                 line_noise_rms: float = 0.0) -> None:
        if chunk_ms <= 0 or chunk_ms % 10:
            raise ValueError("chunk_ms must be a positive multiple of 10")
        self.webhook_url, self.status_url, self.auth_token = webhook_url, status_url, auth_token
        self.to, self.from_ = to, from_
        self.account_sid, self.call_sid = sid("AC"), sid("CA")
        self.stream_sid = ""
        self.chunk_bytes = RATE * chunk_ms // 1000
        self.echo_marks = echo_marks
        self.line_noise_rms = line_noise_rms  # 0: digital silence between the caller's words
        self._rng = np.random.default_rng(1)
        self.phone = Phone()
        self.violations: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.twiml: StreamTwiml | None = None
        self.streams: list[str] = []
        self.action_answers: list[str] = []
        self.ws: ClientConnection | None = None
        self.closed_by_app = asyncio.Event()
        self.close_code: int | None = None
        self._seq = 0
        self._chunk = 0
        self._t0 = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: deque[bytes] = deque()  # caller audio waiting for its 20 ms slots
        self._started = time.monotonic()

    # -- webhooks -------------------------------------------------------------------------------

    def call_params(self, status: str) -> dict[str, str]:
        """The standard parameters of every voice request (Twilio's voice webhook page)."""
        return {
            "AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "CallSid": self.call_sid,
            "CallStatus": status, "Called": self.to, "CalledCity": "", "CalledCountry": "US",
            "CalledState": "", "CalledZip": "", "Caller": self.from_, "CallerCity": "SAN FRANCISCO",
            "CallerCountry": "US", "CallerState": "CA", "CallerZip": "94105", "Direction": "inbound",
            "From": self.from_, "FromCity": "SAN FRANCISCO", "FromCountry": "US", "FromState": "CA",
            "FromZip": "94105", "To": self.to, "ToCity": "", "ToCountry": "US", "ToState": "", "ToZip": "",
            "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJ%22%7D",
            "StirVerstat": "TN-Validation-Passed-A",
        }

    async def post(self, url: str, params: dict[str, str], method: str = "POST") -> httpx.Response:
        headers = {"X-Twilio-Signature": "", "User-Agent": "TwilioProxy/1.1",
                   "I-Twilio-Idempotency-Token": secrets.token_hex(16), "Accept": "*/*",
                   "Cache-Control": "max-age=259200"}
        async with httpx.AsyncClient(timeout=15) as client:
            if method == "GET":  # the parameters go in the query string, which the signed URL covers
                sep = "&" if urllib.parse.urlsplit(url).query else "?"
                url = url + sep + urllib.parse.urlencode(params)
                headers["X-Twilio-Signature"] = twilio_signature(self.auth_token, url)
                return await client.get(url, headers=headers)
            headers["X-Twilio-Signature"] = twilio_signature(self.auth_token, url, params)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return await client.post(url, content=urllib.parse.urlencode(params), headers=headers)

    async def ring(self, method: str = "POST") -> StreamTwiml | None:
        resp = await self.post(self.webhook_url, self.call_params("ringing"), method)
        self._expect_twiml(resp, "voice webhook")
        self.twiml = read_twiml(resp.text, self.webhook_url)
        return self.twiml

    def _expect_twiml(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code != 200:
            raise AssertionError(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}")
        ctype = resp.headers.get("content-type", "").split(";")[0].strip()
        if ctype not in ("text/xml", "application/xml"):
            self.violations.append(f"{what}: TwiML served as {ctype!r}")

    async def status_callback(self, status: str = "completed") -> int | None:
        if not self.status_url:
            return None
        params = {**self.call_params(status), "CallDuration": str(int(time.monotonic() - self._started)),
                  "Duration": "1", "Timestamp": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
                  "CallbackSource": "call-progress-events", "SequenceNumber": "0"}
        return (await self.post(self.status_url, params)).status_code

    async def follow_action(self) -> StreamTwiml | None:
        """The stream ended with the call up: request `<Connect action>` as Twilio does."""
        if self.twiml is None or not self.twiml.action:
            return None
        resp = await self.post(self.twiml.action, self.call_params("in-progress"), self.twiml.method)
        self._expect_twiml(resp, "<Connect action>")
        self.action_answers.append(resp.text)
        return read_twiml(resp.text, self.twiml.action)

    # -- the media stream -----------------------------------------------------------------------

    async def open_stream(self, twiml: StreamTwiml | None = None) -> None:
        twiml = twiml or self.twiml
        assert twiml is not None, "the webhook answered no <Connect><Stream>"
        self.stream_sid = sid("MZ")
        self.streams.append(self.stream_sid)
        self._seq, self._chunk = 0, 0
        self.closed_by_app = asyncio.Event()
        headers = {"X-Twilio-Signature": twilio_signature(self.auth_token, twiml.url)}
        self.ws = await connect(twiml.url, additional_headers=headers, compression=None, max_size=2 ** 20)
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send({"event": "start", "sequenceNumber": self._next_seq(), "start": {
            "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": ["inbound"], "customParameters": dict(twiml.parameters),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}},
            "streamSid": self.stream_sid})
        self._t0 = time.monotonic()
        self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._play())]

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send(text)

    async def send_media(self, ulaw: bytes) -> None:
        self._chunk += 1
        timestamp = round((self._chunk - 1) * len(ulaw) * 1000 / RATE)
        await self._send({"event": "media", "sequenceNumber": self._next_seq(), "media": {
            "track": "inbound", "chunk": str(self._chunk), "timestamp": str(timestamp),
            "payload": base64.b64encode(ulaw).decode()}, "streamSid": self.stream_sid})

    async def send_dtmf(self, digit: str) -> None:
        await self._send({"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": self._next_seq(),
                          "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self) -> None:
        """The caller hung up: `stop`, then Twilio closes the socket."""
        await self._send({"event": "stop", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                          "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
        await self.close()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def say(self, pcm8k: np.ndarray) -> None:
        """Queue caller speech (8 kHz PCM); `pump` sends it at real-time pace."""
        data = ulaw_encode(pcm8k)
        data += bytes([ULAW_SILENCE]) * ((-len(data)) % self.chunk_bytes)
        self._outbox.extend(data[i:i + self.chunk_bytes] for i in range(0, len(data), self.chunk_bytes))

    @property
    def speaking(self) -> bool:
        return bool(self._outbox)

    async def pump(self, seconds: float, until: Any = None) -> bool:
        """Send caller audio (or line silence) in real time for up to `seconds`, or until `until()` is
        true; False when the application closed the stream first."""
        step = self.chunk_bytes / RATE
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            if self.closed_by_app.is_set():
                return False
            if until is not None and until():
                return True
            chunk = self._outbox.popleft() if self._outbox else self._line()
            try:
                await self.send_media(chunk)
            except ConnectionClosed:
                return False
            next_at += step
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        return not self.closed_by_app.is_set()

    def _line(self) -> bytes:
        """What the line carries while the caller is silent."""
        if not self.line_noise_rms:
            return bytes([ULAW_SILENCE]) * self.chunk_bytes
        return ulaw_encode(self._rng.normal(0, self.line_noise_rms, self.chunk_bytes))

    async def _receive(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                self._check_and_queue(raw)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed_by_app.set()

    def _check_and_queue(self, raw: str | bytes) -> None:
        if not isinstance(raw, str):
            self.violations.append("binary frame")
            return
        try:
            msg = json.loads(raw)
        except ValueError:
            self.violations.append(f"not JSON: {raw[:80]!r}")
            return
        self.received.append(msg)
        problem = outbound_problem(msg, self.stream_sid)
        if problem:
            self.violations.append(problem)
            return
        now = time.monotonic()
        if msg["event"] == "media":
            self.phone.received_at.append(now)
            self.phone.queue.append(("media", base64.b64decode(msg["media"]["payload"])))
        elif msg["event"] == "mark":
            self.phone.marks_sent.append(msg["mark"]["name"])
            self.phone.queue.append(("mark", msg["mark"]["name"]))
        else:  # clear: buffered audio is dropped and every pending mark comes back at once
            self.phone.clears += 1
            pending = [str(item) for kind, item in self.phone.queue if kind == "mark"]
            self.phone.queue.clear()
            for name in pending:
                asyncio.get_running_loop().create_task(self._echo(name))

    async def _echo(self, name: str) -> None:
        if not self.echo_marks:
            return
        self.phone.marks_echoed.append(name)
        try:
            await self._send({"event": "mark", "sequenceNumber": self._next_seq(),
                              "streamSid": self.stream_sid, "mark": {"name": name}})
        except ConnectionClosed:
            pass

    async def _play(self) -> None:
        """The handset: 20 ms of queued audio per tick; a mark comes back when the audio before it played."""
        buffer = bytearray()
        next_at = time.monotonic()
        while True:
            q = self.phone.queue
            while len(buffer) < 160 and q:
                kind, item = q[0]
                if kind == "mark":
                    if buffer:  # the audio before the mark has not played yet
                        break
                    q.popleft()
                    await self._echo(str(item))
                else:
                    q.popleft()
                    buffer += bytes(item)  # type: ignore[arg-type]
            if buffer:
                frame, buffer = bytes(buffer[:160]), buffer[160:]
                self.phone.played += frame
                self.phone.audio_played_at.append(time.monotonic())
            next_at += FRAME_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def agent_audio(self) -> np.ndarray:
        return ulaw_decode(bytes(self.phone.played))


def outbound_problem(msg: Any, stream_sid: str) -> str | None:
    """Why a message the application sent is not one of the documented `media`, `mark`, `clear`."""
    if not isinstance(msg, dict):
        return f"not a JSON object: {msg!r:.80}"
    event = msg.get("event")
    shapes = {"media": {"event", "streamSid", "media"}, "mark": {"event", "streamSid", "mark"},
              "clear": {"event", "streamSid"}}
    if event not in shapes:
        return f"undocumented event {event!r}"
    if set(msg) != shapes[event]:
        return f"{event}: keys {sorted(msg)} (documented: {sorted(shapes[event])})"
    if msg["streamSid"] != stream_sid:
        return f"{event}: streamSid {msg['streamSid']!r} is not this stream's {stream_sid!r}"
    if event == "media":
        media = msg["media"]
        if not isinstance(media, dict) or set(media) != {"payload"}:
            return f"media.media must be {{payload}}, got {media!r:.80}"
        try:
            audio = base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            return "media.payload is not base64"
        if not 0 < len(audio) <= MAX_PAYLOAD_BYTES:
            return f"media.payload of {len(audio)} bytes"
        if audio[:4] in (b"RIFF", b"ID3\x03", b"OggS") or audio[:3] == b"ID3":
            return "media.payload carries a file header (must be raw mu-law)"
    if event == "mark":
        mark = msg["mark"]
        if not isinstance(mark, dict) or set(mark) != {"name"} or not isinstance(mark["name"], str) \
                or not mark["name"]:
            return f"mark.mark must be {{name: non-empty string}}, got {mark!r:.80}"
    return None
