"""Helpers for the tests of a region's worker pool: real worker processes (`python -m cells.worker
--nats-url`) on a real NATS supercluster, a minimal control-side voice webhook (slot requests over
NATS, call tokens, resume on live state), and reading a call's events back from JetStream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import nats
from hypercorn.asyncio import serve
from hypercorn.config import Config
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError
from quart import Quart

from cells.contract.call_state import CallStateStore
from cells.contract.call_token import SECRET_ENV, CallTokenAuthority
from cells.contract.envelope import CallEventEnvelope, call_id_for_sid
from cells.contract.jetstream import call_stream_name, ensure_call_stream
from cells.contract.slots import request_slot
from cells.contract.twilio_webhook import (
    NumberRoute,
    SlotRequest,
    WebhookSettings,
    WorkerSlot,
    twilio_voice_blueprint,
)
from cells.launcher import NatsSupercluster
from cells.launcher.ports import free_port
from cells.simulator.run import worker_process
from regions.kms import REGION_KEY_ENV

TOKEN = secrets.token_hex(16)
SECRET = secrets.token_urlsafe(48)
TENANT, AGENT = str(uuid.uuid4()), str(uuid.uuid4())
NUMBER = "+15005550001"
AGENT_SPEC = {"id": AGENT, "tenant_id": TENANT, "region": "eu", "name": "Front desk", "vertical": "reception",
              "persona": "", "voice": {"provider": "espeak", "voice_id": "en-us"}, "providers": {},
              "tools": [], "flows": {},
              "compliance": {"ai_disclosure": True, "disclosure_text": "Hi, an AI answers.",
                             "record_calls": True},
              "updated_at": "2026-01-01T00:00:00+00:00"}


class WorkerCell:
    """NATS plus a pool of worker processes of region eu; more workers can join mid-module."""

    def __init__(self, root: Path, stack: ExitStack, nats_sc: NatsSupercluster) -> None:
        self.root = root
        self.stack = stack
        self.nats = nats_sc
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, wid: str) -> subprocess.Popen[bytes]:
        proc, _ = self.stack.enter_context(worker_process(
            self.root / wid, TOKEN, ["--nats-url", self.nats.url("eu"), "--region", "eu", "--worker-id", wid,
                                     "--capacity", "2", "--profile", "instant",
                                     "--object-store", str(self.root / "objects")]))
        self.workers[wid] = proc
        return proc

    def live(self) -> list[str]:
        return [wid for wid, proc in self.workers.items() if proc.poll() is None]

    def at_least(self, count: int) -> None:
        """Spawn workers until `count` are alive (an earlier test may have stopped some)."""
        n = len(self.workers)
        while len(self.live()) < count:
            n += 1
            self.spawn(f"w{n}")

    def log(self, wid: str) -> str:
        return (self.root / wid / "worker.log").read_text(errors="replace")


@contextmanager
def worker_cell(root: Path, workers: int) -> Iterator[WorkerCell]:
    with ExitStack() as stack:
        sc = stack.enter_context(NatsSupercluster(root / "nats", ("eu", "in", "us")))
        os.environ[SECRET_ENV] = SECRET  # the workers redeem the tokens the webhook mints
        stack.callback(os.environ.pop, SECRET_ENV, None)
        # The cell's region key: workers seal recordings with it (without one they record nothing).
        os.environ[REGION_KEY_ENV] = base64.urlsafe_b64encode(os.urandom(32)).decode()
        stack.callback(os.environ.pop, REGION_KEY_ENV, None)
        cell = WorkerCell(root, stack, sc)
        cell.at_least(workers)
        yield cell


@asynccontextmanager
async def control_webhook(nats_url: str) -> AsyncIterator[str]:
    """The control plane's voice webhook, reduced to what a resume needs."""
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await ensure_call_stream(js, "eu")
    state = await CallStateStore.open(js, "eu")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def slot(req: SlotRequest) -> WorkerSlot | None:
        body = {"call_id": str(call_id_for_sid(req.call_sid)), "call_sid": req.call_sid,
                "tenant_id": req.tenant_id, "region": "eu", "agent_id": req.agent_id, "agent": AGENT_SPEC,
                "from": req.from_number, "to": req.to_number, "direction": req.direction,
                "resume": req.resume}
        reply = await request_slot(nc, "eu", body, timeout=1.0, attempts=3)
        return WorkerSlot(reply["stream_url"], reply["worker_id"]) if reply else None

    async def should_resume(call_sid: str, form: dict[str, str]) -> bool:
        return await state.should_resume(str(call_id_for_sid(call_sid)))

    app = Quart(__name__)
    app.register_blueprint(twilio_voice_blueprint(
        WebhookSettings(auth_token=TOKEN, public_base_url=url, allow_insecure_streams=True),
        tokens=CallTokenAuthority(SECRET), lookup_number={NUMBER: NumberRoute(TENANT, AGENT)}.get,
        request_slot=slot, should_resume=should_resume))
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        while True:  # until it listens
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            await asyncio.sleep(0.05)
        yield url
    finally:
        stop.set()
        await server
        await nc.close()


async def call_events(nats_url: str, call_id: str) -> list[CallEventEnvelope]:
    """Every event of the call in the region's stream, in stream order."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        subject = f"eu.calls.{TENANT}.{call_id}.>"
        sub = await js.pull_subscribe(subject, stream=call_stream_name("eu"), config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, filter_subject=subject))
        out: list[CallEventEnvelope] = []
        while True:
            try:
                out.extend(CallEventEnvelope.from_bytes(m.data) for m in await sub.fetch(200, timeout=1.0))
            except TimeoutError:  # nats-py raises its own or asyncio's when nothing is left
                break
        return out
    finally:
        await nc.close()


async def events_until(nats_url: str, call_id: str, kind: str) -> list[CallEventEnvelope]:
    """The call's events once one of `kind` is among them (workers publish the last ones after
    settling the call's state)."""
    while True:
        try:
            evs = await call_events(nats_url, call_id)
        except ServiceUnavailableError:  # a restarted server's JetStream answers 503 while it recovers
            await asyncio.sleep(0.2)
            continue
        if any(e.kind == kind for e in evs):
            return evs
        await asyncio.sleep(0.1)


def by_stream(events: list[CallEventEnvelope], stream_sids: list[str]) -> dict[str, list[CallEventEnvelope]]:
    return {sid: [e for e in events if e.event_id.split(":")[1] == sid] for sid in stream_sids}


def seqs(events: list[CallEventEnvelope]) -> list[int]:
    return [int(e.event_id.rsplit(":", 1)[1]) for e in events]
