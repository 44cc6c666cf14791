"""The far end of a raw PCM stream (cells.telephony.pcm_ws): the call is answered through Twilio's voice
webhook (for its call token), then its audio flows as 16-bit PCM over the worker's /pcm WebSocket. Same
interface as TwilioPeer, so ScriptedCaller drives either; playback and marks work the same way."""

from __future__ import annotations

import json
import time

import numpy as np
from websockets.asyncio.client import connect

import media_core
from cells.simulator.twilio_peer import StreamTarget, TwilioPeer


class PcmPeer(TwilioPeer):
    def __init__(self, base_url: str, auth_token: str, *, sample_rate: int = 16000) -> None:
        super().__init__(base_url, auth_token)
        self.sample_rate = sample_rate
        self._up = media_core.Resampler(8000, sample_rate) if sample_rate != 8000 else None
        self._down = media_core.Resampler(sample_rate, 8000) if sample_rate != 8000 else None

    async def open_stream(self, target: StreamTarget) -> None:
        if self.ws is not None:
            raise RuntimeError("a PCM stream is not resumed")
        self.target = target
        url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/pcm"
        self.ws = await connect(url, max_size=2**20)
        await self.ws.send(json.dumps({"event": "start", "call_sid": self.call_sid,
                                       "sample_rate": self.sample_rate,
                                       "call_token": target.parameters["call_token"]}))
        self._started = time.monotonic()

    async def send_frame(self, ulaw: bytes) -> None:
        """The caller's 20 ms of 8 kHz mu-law (as ScriptedCaller makes it), sent as s16le at our rate."""
        assert self.ws is not None
        pcm = media_core.ulaw_decode(ulaw)
        if self._up is not None:
            pcm = self._up.process(pcm)
        await self.ws.send(np.asarray(pcm, "<i2").tobytes())

    async def send_dtmf(self, digit: str) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps({"event": "dtmf", "digit": digit}))

    async def hang_up(self) -> None:
        if self.ws is None:
            return
        await self.ws.send(json.dumps({"event": "stop"}))
        await self.ws.close()

    async def _echo_mark(self, name: str) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps({"event": "played", "name": name}))

    async def receive_loop(self) -> None:
        """Queues the agent's audio (kept as 8 kHz mu-law, like TwilioPeer's) and marks; `clear` drops
        queued audio and echoes its marks at once."""
        assert self.ws is not None
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    self.playback.arrivals.append(time.monotonic())
                    pcm = np.frombuffer(raw, "<i2").astype(np.int16)
                    if self._down is not None:
                        pcm = self._down.process(pcm)
                    self.playback.queue.append(("media", media_core.ulaw_encode(pcm)))
                    continue
                msg = json.loads(raw)
                if msg.get("event") == "mark":
                    self.playback.queue.append(("mark", msg["name"]))
                elif msg.get("event") == "clear":
                    self.playback.clears += 1
                    await self._clear_playback()
        except Exception as exc:  # the agent side closed the socket: the call is over
            self.close_reason = str(exc)
        finally:
            self.closed_by_agent.set()
