"""The carrier side of a call, as Twilio does it: a signed voice webhook, then a Media Streams
WebSocket that sends the caller's audio as 20 ms mu-law frames in real time (silence included)
and plays the agent's audio back at real-time speed, echoing marks as playback reaches them
and dropping queued audio on `clear`.

When the media WebSocket closes while the call is up, Twilio requests the `<Connect action>` URL
(signed, with the call's parameters and CallStatus=in-progress) and carries on with the TwiML it
gets: a new `<Connect><Stream>` opens a new stream (new StreamSid) on the same call, `<Hangup/>`
ends the call. `follow_action` does that.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field

import httpx
import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

import media_core

FRAME_S = 0.020
FRAME_BYTES = 160
SILENCE = b"\xff" * FRAME_BYTES


@dataclass
class StreamTarget:
    url: str
    parameters: dict[str, str]
    action: str | None


def parse_twiml(xml: str) -> StreamTarget:
    target = stream_in_twiml(xml)
    if target is None:
        raise ValueError(f"TwiML has no <Connect><Stream url>: {xml[:300]}")
    return target


def stream_in_twiml(xml: str) -> StreamTarget | None:
    """The `<Connect><Stream>` of a TwiML answer; None when it has none (`<Hangup/>`, `<Say>`...)."""
    root = ET.fromstring(xml)
    connect_el = root.find("Connect")
    stream = connect_el.find("Stream") if connect_el is not None else None
    if connect_el is None or stream is None or not stream.get("url"):
        return None
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return StreamTarget(stream.get("url", ""), params, connect_el.get("action"))


@dataclass
class Playback:
    """What the caller's phone plays: agent audio at real-time speed, marks echoed on arrival."""

    queue: deque[tuple[str, bytes | str]] = field(default_factory=deque)
    recording: bytearray = field(default_factory=bytearray)
    # (wall time, bytes offset in recording) of each frame of agent audio played (non-silent).
    audio_frames_at: list[float] = field(default_factory=list)
    marks_played: list[str] = field(default_factory=list)
    marks_cleared: list[str] = field(default_factory=list)
    clears: int = 0
    arrivals: list[float] = field(default_factory=list)  # wall time of each agent media message

    @property
    def busy(self) -> bool:
        return any(kind == "media" for kind, _ in self.queue)


class TwilioPeer:
    def __init__(self, base_url: str, auth_token: str, *, account_sid: str = "AC" + "0" * 32,
                 from_number: str = "+15005550006", to_number: str = "+15005550001",
                 client: httpx.AsyncClient | None = None, compression: str | None = None) -> None:
        # `client`: one shared by many simulated calls (a load test), instead of one per request.
        # `compression`: Twilio offers no permessage-deflate, so by default neither does the simulator.
        self.client, self.compression = client, compression
        self.base_url = base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.account_sid = account_sid
        self.from_number, self.to_number = from_number, to_number
        self.call_sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.playback = Playback()
        self.ws: ClientConnection | None = None
        self._seq = 0
        self._chunk = 0
        self._started = 0.0
        self.closed_by_agent = asyncio.Event()
        self.close_reason = ""
        self.target: StreamTarget | None = None
        self.stream_sids: list[str] = []  # every stream of this call, in order
        self.action_requests: list[dict[str, str]] = []  # the `<Connect action>` requests made
        self.action_answers: list[str] = []  # and the TwiML each one got

    def _signed(self, url: str, params: dict[str, str]) -> dict[str, str]:
        return {"X-Twilio-Signature": self.validator.compute_signature(url, params)}

    async def ring(self, path: str = "/twilio/voice") -> StreamTarget:
        url = self.base_url + path
        form = {"CallSid": self.call_sid, "AccountSid": self.account_sid, "From": self.from_number,
                "To": self.to_number, "Direction": "inbound", "CallStatus": "ringing",
                "ApiVersion": "2010-04-01"}
        resp = await self._post(url, form, 10)
        return parse_twiml(resp.text)

    async def _post(self, url: str, form: dict[str, str], timeout: float) -> httpx.Response:
        if self.client is not None:
            resp = await self.client.post(url, data=form, headers=self._signed(url, form), timeout=timeout)
        else:
            async with httpx.AsyncClient(timeout=timeout) as client:
                resp = await client.post(url, data=form, headers=self._signed(url, form))
        resp.raise_for_status()
        return resp

    async def follow_action(self) -> StreamTarget | None:
        """The stream ended while the call is up: request the `<Connect action>` URL as Twilio does and
        return the new stream's target, or None when the answer ends the call (or there is none)."""
        if self.target is None or not self.target.action:
            return None
        url = urllib.parse.urljoin(self.base_url + "/", self.target.action)
        form = {"AccountSid": self.account_sid, "CallSid": self.call_sid, "From": self.from_number,
                "To": self.to_number, "CallStatus": "in-progress", "Direction": "inbound",
                "ApiVersion": "2010-04-01"}
        self.action_requests.append({"url": url, **form})
        resp = await self._post(url, form, 15)
        self.action_answers.append(resp.text)
        return stream_in_twiml(resp.text)

    async def open_stream(self, target: StreamTarget) -> None:
        if self.ws is not None:  # a new stream on the same call (after `<Connect action>`)
            self.stream_sid = "MZ" + uuid.uuid4().hex
            self.closed_by_agent = asyncio.Event()
            self.close_reason = ""
            self.playback.queue.clear()  # what the old stream had queued never plays
            self._seq = 0
            self._chunk = 0
        self.target = target
        self.stream_sids.append(self.stream_sid)
        self.ws = await connect(target.url, additional_headers=self._signed(target.url, {}),
                                max_size=2**20, compression=self.compression)
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send({
            "event": "start", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
            "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                      "tracks": ["inbound"], "customParameters": target.parameters,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
        })
        self._started = time.monotonic()

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _send(self, msg: dict[str, object]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(msg))

    async def send_frame(self, ulaw: bytes) -> None:
        self._chunk += 1
        ts = int((time.monotonic() - self._started) * 1000)
        await self._send({"event": "media", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                          "media": {"track": "inbound", "chunk": str(self._chunk), "timestamp": str(ts),
                                    "payload": base64.b64encode(ulaw).decode()}})

    async def send_dtmf(self, digit: str) -> None:
        await self._send({"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": self._next_seq(),
                          "dtmf": {"track": "inbound_track", "digit": digit}})

    async def hang_up(self) -> None:
        if self.ws is None:
            return
        await self._send({"event": "stop", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                          "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
        await self.ws.close()

    async def receive_loop(self) -> None:
        """Queues what the agent sends; `clear` drops queued audio and echoes its marks at once."""
        assert self.ws is not None
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                event = msg.get("event")
                if event == "media":
                    self.playback.arrivals.append(time.monotonic())
                    self.playback.queue.append(("media", base64.b64decode(msg["media"]["payload"])))
                elif event == "mark":
                    self.playback.queue.append(("mark", msg["mark"]["name"]))
                elif event == "clear":
                    self.playback.clears += 1
                    await self._clear_playback()
        except Exception as exc:  # the agent side closed the socket: the call is over
            self.close_reason = str(exc)
        finally:
            self.closed_by_agent.set()

    async def _clear_playback(self) -> None:
        """`clear`: queued audio is dropped and every pending mark echoed at once."""
        for kind, item in list(self.playback.queue):
            if kind == "mark":
                self.playback.marks_cleared.append(str(item))
                await self._echo_mark(str(item))
        self.playback.queue.clear()

    async def _echo_mark(self, name: str) -> None:
        await self._send({"event": "mark", "streamSid": self.stream_sid, "sequenceNumber": self._next_seq(),
                          "mark": {"name": name}})

    async def play_tick(self) -> None:
        """Plays one 20 ms frame of agent audio (or silence) and echoes marks reached."""
        q = self.playback.queue
        while q and q[0][0] == "mark":
            name = str(q.popleft()[1])
            self.playback.marks_played.append(name)
            if self.ws is not None and not self.closed_by_agent.is_set():
                await self._echo_mark(name)
        if q and q[0][0] == "media":
            frame = bytes(q.popleft()[1])
            self.playback.audio_frames_at.append(time.monotonic())
        else:
            frame = SILENCE
        self.playback.recording += frame

    def agent_audio(self) -> np.ndarray:
        return media_core.ulaw_decode(bytes(self.playback.recording))
