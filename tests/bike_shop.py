"""A toy vertical defined purely by data: a bike-repair shop's agent record (flows + one `http` tool),
and the shop's booking server (aiohttp on loopback) that checks each request's signature and keeps
what it was asked to book. Shared by the flow agent's tests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cells.tools.http import SIGNATURE_HEADER, verify

SECRET_NAME = "bike_shop"
SECRET = "a-test-secret-for-the-bike-shop"  # the worker reads it from AUTOSPEAK_SECRET_BIKE_SHOP
SHOP = "Riverside Bike Repair"

BOOK_REPAIR_SCHEMA = {
    "type": "object",
    "properties": {"day": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                   "time": {"type": "string", "pattern": r"^\d{2}:\d{2}$"},
                   "name": {"type": "string", "minLength": 2}},
    "required": ["day", "time", "name"],
    "additionalProperties": False,
}


def bike_shop_record(tool_url: str) -> dict[str, Any]:
    """The agent as a tenant creates it through the API (AgentCreate)."""
    return {
        "name": SHOP,
        "vertical": "bike_repair",
        "persona": "A friendly bike workshop receptionist.",
        "tools": [{"name": "book_repair", "description": "Book a bike in for a repair.", "kind": "http",
                   "url": tool_url, "secret": SECRET_NAME, "requires_confirmation": True, "timeout_s": 3.0,
                   "parameters": BOOK_REPAIR_SCHEMA}],
        "flows": {"main": {"start": "intake", "states": {
            "intake": {"prompt": "I can book your bike in for a repair.",
                       "slots": [{"name": "day", "type": "date",
                                  "ask": "Which day would you like to bring it in?"},
                                 {"name": "time", "type": "time", "ask": "At what time?"},
                                 {"name": "name", "type": "name", "ask": "What name should I put it under?"}],
                       "next": ["book"]},
            "book": {"tool": "book_repair", "arguments": {"day": "day", "time": "time", "name": "name"},
                     "next": ["booked"], "on_failure": "failed", "on_decline": "intake"},
            "booked": {"prompt": "Your repair is booked for {day} at {time}. Thank you, goodbye.",
                       "end": True},
            "failed": {"prompt": "Sorry, the workshop diary is not answering, so I could not make that "
                                 "appointment. Please call again later. Goodbye.", "end": True},
        }}},
        "compliance": {"record_calls": False},
    }


@dataclass
class ToolServer:
    """The shop's booking endpoint. `mode`: ok, error (500), refuse (422) or slow (answers late)."""

    mode: str = "ok"
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    unsigned: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET.encode(), body, request.headers.get(SIGNATURE_HEADER, ""), time.time()):
            self.unsigned += 1
            return web.json_response({"error": "bad signature"}, status=401)
        if self.mode == "slow":
            await asyncio.sleep(10)
        if self.mode == "error":
            return web.json_response({"error": "diary offline"}, status=500)
        if self.mode == "refuse":
            return web.json_response({"error": "closed that day"}, status=422)
        payload = json.loads(body)
        self.received.append({**payload, "idempotency_key": request.headers.get("Idempotency-Key")})
        return web.json_response({"reference": f"R{len(self.received)}"})


@contextmanager
def tool_server(mode: str = "ok") -> Iterator[ToolServer]:
    """The server on a free loopback port, in a thread of its own (tests drive calls with asyncio.run)."""
    server = ToolServer(mode)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/book", server.handle)
        r = web.AppRunner(app)
        await r.setup()
        site = web.TCPSite(r, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server.url = f"http://127.0.0.1:{port}/book"
        runner.append(r)
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()),
                              daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
