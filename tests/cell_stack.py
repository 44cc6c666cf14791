"""The whole embedded platform for the cross-cell tests: `EmbeddedStack` with free ports, two workers
in eu (so one can die), one elsewhere, and helpers to call it as Twilio and as an API client would."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats

from cells.contract.jetstream import call_stream_name
from cells.launcher.stack import EmbeddedStack
from cells.simulator.caller import CallResult, ScriptedCaller
from cells.simulator.scripts import SCRIPTS
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine


@contextmanager
def running_stack(workers: int | dict[str, int] | None = None, capacity: int = 4) -> Iterator[EmbeddedStack]:
    """The three regional cells on free ports (all three: the supercluster's JetStream needs them)."""
    # Not under pytest's basetemp (see tests/db_fixtures.py: the database runs as another user).
    data_dir = Path(tempfile.mkdtemp(prefix="autospeak-stack-test-"))
    stack = EmbeddedStack(data_dir, base_port=None, workers=workers or {"eu": 2, "in": 1, "us": 1},
                          capacity=capacity)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class PlacedCall:
    region: str
    peer: TwilioPeer
    result: CallResult

    @property
    def call_sid(self) -> str:
        return self.peer.call_sid


async def place_call(stack: EmbeddedStack, region: str, script: str = "hours") -> PlacedCall:
    peer = TwilioPeer(stack.api_url(region), stack.secrets["twilio_auth_token"],
                      to_number=stack.demo[region].number)
    target = await peer.ring()
    await peer.open_stream(target)
    result = await ScriptedCaller(peer, SCRIPTS[script], engine=EspeakEngine()).run()
    return PlacedCall(region, peer, result)


def api_get(stack: EmbeddedStack, region: str, path: str, *, token: str | None = None,
            tenant_region: str | None = None) -> httpx.Response:
    """GET `/v1/tenants/<tenant of tenant_region>{path}` on the cell of `region`; no redirects followed."""
    demo = stack.demo[tenant_region or region]
    headers = {"Authorization": f"Bearer {token or demo.owner_token}"}
    url = f"{stack.api_url(region)}/v1/tenants/{demo.tenant_id}{path}"
    return httpx.get(url, headers=headers, timeout=10, follow_redirects=False)


def call_id_of(stack: EmbeddedStack, region: str, call_sid: str) -> str:
    for item in api_get(stack, region, "/calls?limit=100").json()["items"]:
        if item["carrier_call_sid"] == call_sid:
            return str(item["id"])
    raise AssertionError(f"call {call_sid} not listed in {region}")


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def events_of(stack: EmbeddedStack, region: str, call_id: str) -> list[dict[str, Any]]:
    return api_get(stack, region, f"/calls/{call_id}/events?limit=500").json()["items"]


def wait_completed(stack: EmbeddedStack, region: str, call_sid: str) -> str:
    """The call's id once the control plane has persisted its end (call_ended consumed)."""
    def done() -> str | None:
        try:
            call_id = call_id_of(stack, region, call_sid)
        except AssertionError:
            return None
        kinds = {e["kind"] for e in events_of(stack, region, call_id)}
        return call_id if "call_ended" in kinds else None

    return wait_for(done, what=f"call {call_sid} to be persisted as ended")


async def stream_event_ids(stack: EmbeddedStack, region: str, call_id: str) -> list[str]:
    """Every event id of one call in the region's JetStream stream, duplicates included."""
    assert stack.nats is not None
    nc = await nats.connect(stack.nats.url(region))
    try:
        js = nc.jetstream()
        demo = stack.demo[region]
        subject = f"{region}.calls.{demo.tenant_id}.{call_id}.>"
        sub = await js.subscribe(subject, ordered_consumer=True, stream=call_stream_name(region))
        info = await js.stream_info(call_stream_name(region), subjects_filter=subject)
        expected = sum((info.state.subjects or {}).values())
        ids = []
        while len(ids) < expected:
            msg = await sub.next_msg(timeout=5)
            ids.append(json.loads(msg.data)["event_id"])
        await sub.unsubscribe()
        return ids
    finally:
        await nc.close()


def stream_ids(stack: EmbeddedStack, region: str, call_id: str) -> list[str]:
    return asyncio.run(stream_event_ids(stack, region, call_id))


class WebhookReceiver:
    """A tenant's HTTPS endpoint stand-in: records every POST (body and headers), answers 204."""

    def __init__(self) -> None:
        import http.server
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
