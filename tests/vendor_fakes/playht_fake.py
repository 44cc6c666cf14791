"""A local server speaking PlayHT's HTTP streaming API as `pyht` uses it: `POST /api/v4/sdk-auth`
(user id and key in, inference coordinates out: a signed streaming URL per voice engine) and
`POST <http_streaming_url>` (JSON request, audio streamed back; errors as JSON with `error_message`)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiohttp import web

from .common import Fault, HttpFake, hang_forever, tone

ENGINES = ("Play3.0-mini", "PlayDialog", "PlayDialogMultilingual", "PlayDialogArabic")


class PlayHtFake(HttpFake):
    def __init__(self, user_id: str = "ph-user", api_key: str = "ph-test-key") -> None:
        super().__init__()
        self.user_id = user_id
        self.api_key = api_key
        self.token = "signed-token-123"
        self.faults: deque[Fault | None] = deque()
        self.auth_calls = 0
        self.seconds = 0.4

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v4/sdk-auth", self._auth)
        app.router.add_post("/v3/tts/stream", self._stream)

    async def _auth(self, request: web.Request) -> web.Response:
        self.auth_calls += 1
        if (request.headers.get("authorization") != f"Bearer {self.api_key}"
                or request.headers.get("x-user-id") != self.user_id):
            return web.json_response({"error_message": "Invalid credentials"}, status=401)
        coordinates: dict[str, Any] = {"expires_at": "2099-01-01T00:00:00.000Z"}
        for engine in ENGINES:
            coordinates[engine] = {"http_streaming_url": f"{self.url}/v3/tts/stream?token={self.token}",
                                   "websocket_url": f"ws://127.0.0.1:{self.port}/ws?token={self.token}"}
        return web.json_response(coordinates)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("token") != self.token:
            return web.json_response({"error_message": "bad token"}, status=403)
        body = await request.json()
        self.requests.append(body)
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.hang:
            await hang_forever()
        if fault is not None and fault.status is not None:
            return web.json_response({"error_message": fault.message, "error_id": "SCRIPTED"},
                                     status=fault.status)
        rate = int(body.get("sample_rate") or 24000)
        pcm = tone(int(rate * self.seconds), rate)
        response = web.StreamResponse(headers={"Content-Type": "audio/basic"})
        await response.prepare(request)
        step = 2401  # odd: chunks do not end on sample boundaries
        for n, i in enumerate(range(0, len(pcm), step)):
            if fault is not None and fault.hang_after == n:
                await hang_forever()
            await response.write(pcm[i:i + step])
            await asyncio.sleep(0.005)  # audio is produced over time, not in one burst
        await response.write_eof()
        return response
