"""Pieces the HTTP fakes share: a fault description and an aiohttp server on a free local port."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web


@dataclass(frozen=True)
class Fault:
    """How one request should fail. `status` answers at once with the vendor's error body; `hang`
    accepts the request and never answers; `hang_after` streams that many chunks and then stalls;
    `error_after` streams that many chunks and then sends the vendor's in-stream error."""

    status: int | None = None
    message: str = "scripted failure"
    hang: bool = False
    hang_after: int | None = None
    error_after: int | None = None


async def hang_forever() -> None:
    await asyncio.Event().wait()  # cancelled when the client disconnects or the server stops


def tone(n_samples: int, sample_rate: int, freq: float = 440.0) -> bytes:
    t = np.arange(n_samples) / sample_rate
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


class HttpFake:
    """Base: subclasses add routes in `routes()`; `url` is the server's root once started."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HttpFake:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
