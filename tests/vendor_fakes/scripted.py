"""A vendor fake that can be told how its next matching request fails: the vendor's own error answer
(`status`), an answer that never comes (`hang`), a 200 that is not the vendor's JSON (`garbage`), or
the work done and the answer lost (`lost`: the write happens, then a 502), which is what a retry must
survive without writing twice. Runs in the test's event loop, or in a thread of its own (`threaded`)
for tests that drive calls with asyncio.run per turn."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .common import HttpFake, hang_forever


@dataclass
class Script:
    method: str
    path: str  # a prefix of the request path
    mode: str  # status | hang | garbage | lost
    status: int = 400
    message: str = "scripted failure"


class ScriptedFake(HttpFake):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[Script] = []
        self.seen: list[tuple[str, str]] = []  # (method, path) of every request

    def fail_next(self, method: str, path: str, mode: str, status: int = 400, message: str = "") -> None:
        self.scripts.append(Script(method, path, mode, status, message or "scripted failure"))

    def error_body(self, status: int, message: str) -> Any:
        raise NotImplementedError

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self._middleware)
        self.add_routes(app)

    def _take(self, method: str, path: str) -> Script | None:
        for script in self.scripts:
            if script.method == method and path.startswith(script.path):
                self.scripts.remove(script)
                return script
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.seen.append((request.method, request.path))
        script = self._take(request.method, request.path)
        if script is None:
            return await handler(request)
        if script.mode == "hang":
            await hang_forever()
        if script.mode == "garbage":
            return web.Response(text="<html>upstream hiccup</html>", content_type="text/html")
        if script.mode == "lost":
            await handler(request)
            return web.Response(text="bad gateway", status=502)
        return web.json_response(self.error_body(script.status, script.message), status=script.status)

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.seen if m == method and p.startswith(path))


@contextmanager
def threaded(fake: ScriptedFake) -> Iterator[ScriptedFake]:
    """The fake on a loop in its own thread (for tests whose turns each run asyncio.run)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fake.__aenter__(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
