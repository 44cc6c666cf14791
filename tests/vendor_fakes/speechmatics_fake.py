"""A local server speaking the Speechmatics real-time WebSocket protocol (v2).

Client: StartRecognition (JSON) -> server RecognitionStarted; binary AddAudio -> AudioAdded {seq_no};
ForceEndOfUtterance -> AddTranscript + EndOfUtterance; EndOfStream {last_seq_no} -> the last
AddTranscript, then EndOfTranscript. The fake "recognises" by revealing one more scripted word as an
AddPartialTranscript for every `bytes_per_word` bytes of audio; it stands in for the vendor only.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response


@dataclass
class SmSession:
    words: list[str] = field(default_factory=lambda: ["hello", "world"])
    bytes_per_word: int = 6400  # 200 ms of 16 kHz s16le
    reject_status: int | None = None  # refuse the WebSocket upgrade (401 bad key, 429, ...)
    error_type: str | None = None  # send an Error message of this type after RecognitionStarted
    hang_on_start: bool = False  # never answer StartRecognition
    hang_after_bytes: int | None = None  # stop answering (acks and results) after this much audio
    ignore_force_eou: bool = False


def _result(word: str, t0: float, t1: float) -> dict[str, Any]:
    return {"type": "word", "start_time": t0, "end_time": t1,
            "alternatives": [{"content": word, "confidence": 0.9, "language": "en"}]}


def _transcript(kind: str, words: list[tuple[str, float, float]]) -> str:
    text = " ".join(w for w, _, _ in words)
    t0 = words[0][1] if words else 0.0
    t1 = words[-1][2] if words else 0.0
    return json.dumps({"message": kind, "format": "2.9",
                       "metadata": {"transcript": text + (" " if text else ""), "start_time": t0,
                                    "end_time": t1},
                       "results": [_result(*w) for w in words]})


class SpeechmaticsFake:
    def __init__(self, api_key: str = "sm-test-key") -> None:
        self.api_key = api_key
        self.sessions: deque[SmSession] = deque()
        self.default = SmSession()
        self.received: list[dict[str, Any]] = []  # control messages, for assertions
        self.paths: list[str] = []
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2"

    async def __aenter__(self) -> SpeechmaticsFake:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check,
                                   close_timeout=0.2)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        session = self.sessions[0] if self.sessions else self.default
        status = session.reject_status
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            status = 401
        if status is not None:
            if self.sessions:
                self.sessions.popleft()
            return conn.respond(HTTPStatus(status), f"{HTTPStatus(status).phrase}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        s = self.sessions.popleft() if self.sessions else self.default
        start = json.loads(await ws.recv())
        self.received.append(start)
        if s.hang_on_start:
            await ws.wait_closed()  # silent until the client gives up (and lets the server stop)
            return
        rate = start["audio_format"]["sample_rate"]
        await ws.send(json.dumps({"message": "RecognitionStarted", "id": "fake-session",
                                  "language_pack_info": {"language_description": "English"}}))
        if s.error_type is not None:
            await ws.send(json.dumps({"message": "Error", "type": s.error_type, "reason": "scripted"}))
            await ws.close()
            return
        seq_no = 0
        audio_bytes = 0
        revealed = 0  # words recognised so far
        finalised = 0  # words already sent in an AddTranscript
        per_word_s = s.bytes_per_word / 2 / rate

        def span(i: int) -> tuple[str, float, float]:
            return (s.words[i % len(s.words)], i * per_word_s, (i + 1) * per_word_s)

        async def finalise() -> None:
            nonlocal finalised
            await ws.send(_transcript("AddTranscript", [span(i) for i in range(finalised, revealed)]))
            finalised = revealed

        async for message in ws:
            if isinstance(message, bytes):
                seq_no += 1
                audio_bytes += len(message)
                if s.hang_after_bytes is not None and audio_bytes >= s.hang_after_bytes:
                    await ws.wait_closed()
                    return
                await ws.send(json.dumps({"message": "AudioAdded", "seq_no": seq_no}))
                if audio_bytes // s.bytes_per_word > revealed:
                    revealed = audio_bytes // s.bytes_per_word
                    await ws.send(_transcript("AddPartialTranscript",
                                              [span(i) for i in range(finalised, revealed)]))
                continue
            msg = json.loads(message)
            self.received.append(msg)
            if msg["message"] == "ForceEndOfUtterance" and not s.ignore_force_eou:
                await finalise()
                await ws.send(json.dumps({"message": "EndOfUtterance",
                                          "metadata": {"start_time": revealed * per_word_s,
                                                       "end_time": revealed * per_word_s}}))
            elif msg["message"] == "EndOfStream":
                assert msg["last_seq_no"] == seq_no, (msg, seq_no)
                await asyncio.sleep(0.01)
                if revealed > finalised:
                    await finalise()
                await ws.send(json.dumps({"message": "EndOfTranscript"}))
                return
