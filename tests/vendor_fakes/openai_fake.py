"""A local server speaking OpenAI's HTTP API: chat completions (SSE streaming, with text and tool-call
deltas split across chunks and `data: [DONE]`), `/v1/audio/speech` (PCM streamed in chunks) and
`/v1/audio/transcriptions` (multipart upload, JSON answer).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .common import Fault, HttpFake, hang_forever, tone


@dataclass
class ChatReply:
    """One scripted chat answer. Text streams in `piece`-character deltas; each tool call's arguments
    stream in `piece`-character fragments, the id and name only in the call's first fragment."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fault: Fault | None = None
    piece: int = 4
    delay_s: float = 0.0  # between chunks


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


class OpenAIFake(HttpFake):
    def __init__(self, api_key: str = "sk-test-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.chat_script: deque[ChatReply] = deque()
        self.speech_faults: deque[Fault | None] = deque()
        self.speech_seconds = 0.5
        self.transcripts: deque[str | Fault] = deque()
        self.uploads: list[bytes] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)

    def _unauthorised(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(_error_body(401, "Incorrect API key provided"), status=401)
        return None

    async def _fail(self, fault: Fault) -> web.Response:
        if fault.hang:
            await hang_forever()
        assert fault.status is not None
        return web.json_response(_error_body(fault.status, fault.message), status=fault.status)

    # --- chat ---------------------------------------------------------------------------------------

    def _chunks(self, reply: ChatReply, model: str) -> list[dict[str, Any]]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        out = [chunk({"role": "assistant", "content": ""})]
        for i in range(0, len(reply.text), reply.piece):
            out.append(chunk({"content": reply.text[i:i + reply.piece]}))
        for index, (name, args) in enumerate(reply.tool_calls):
            raw = json.dumps(args)
            pieces = [raw[i:i + reply.piece] for i in range(0, len(raw), reply.piece)] or [""]
            for n, piece in enumerate(pieces):
                frag: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
                if n == 0:
                    frag.update(id=f"call_{index}_fake", type="function")
                    frag["function"]["name"] = name
                out.append(chunk({"tool_calls": [frag]}))
        out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        return out

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorised(request)) is not None:
            return denied
        body = await request.json()
        self.requests.append({"path": "chat", **body})
        reply = self.chat_script.popleft() if self.chat_script else ChatReply(text="Hello from the fake.")
        fault = reply.fault
        if fault is not None and (fault.status is not None or fault.hang):
            return await self._fail(fault)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n, item in enumerate(self._chunks(reply, body["model"])):
            if fault is not None and fault.hang_after == n:
                await hang_forever()
            if fault is not None and fault.error_after == n:
                error = {"error": {"message": fault.message, "type": "server_error"}}
                await response.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
                return response
            await response.write(f"data: {json.dumps(item)}\n\n".encode())
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # --- audio --------------------------------------------------------------------------------------

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorised(request)) is not None:
            return denied
        body = await request.json()
        self.requests.append({"path": "speech", **body})
        fault = self.speech_faults.popleft() if self.speech_faults else None
        if fault is not None and (fault.status is not None or fault.hang):
            return await self._fail(fault)
        if body.get("response_format") != "pcm":
            return web.json_response(_error_body(400, "this fake only speaks pcm"), status=400)
        pcm = tone(int(24000 * self.speech_seconds), 24000)
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        step = 4801  # odd on purpose: the client must carry half samples across chunks
        for n, i in enumerate(range(0, len(pcm), step)):
            if fault is not None and fault.hang_after == n:
                await hang_forever()
            await response.write(pcm[i:i + step])
        await response.write_eof()
        return response

    async def _transcriptions(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorised(request)) is not None:
            return denied
        form = await request.post()
        upload = form["file"]
        data = upload.file.read()  # type: ignore[union-attr]
        self.uploads.append(data)
        self.requests.append({"path": "transcriptions", "model": form.get("model"),
                              "language": form.get("language")})
        answer = self.transcripts.popleft() if self.transcripts else "hello"
        if isinstance(answer, Fault):
            return await self._fail(answer)
        with wave.open(io.BytesIO(data)) as w:  # a real WAV, or the vendor would reject it
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                return web.json_response(_error_body(400, "bad audio"), status=400)
        return web.json_response({"text": answer})
