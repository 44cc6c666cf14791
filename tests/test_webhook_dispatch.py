"""Webhook deliveries sent to a real local HTTP receiver, which verifies every Standard Webhooks signature."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import trustme
from aiohttp import web
from db_fixtures import Database, embedded_database
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from cells.contract.envelope import CallEventEnvelope
from control.api.auth import bootstrap_tenant
from control.db.migrate import upgrade
from control.db.models import WebhookDelivery, WebhookEndpoint
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select
from control.events import IngestOutcome, RetryPolicy, WebhookDispatcher, apply_event, ingest_event, webhooks

T = TypeVar("T")
FAST = RetryPolicy(delays=(0.05,), max_attempts=3, jitter=0.0)


@dataclass
class Receiver:
    """Verifies each request with the endpoint's secret; answers from a per-path script of statuses."""

    secrets: dict[str, str] = field(default_factory=dict)  # path -> signing secret
    script: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer, then 200
    delay: float = 0.0
    received: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (path, webhook-id, body)
    hosts: list[str] = field(default_factory=list)  # the Host header of every verified request
    bad_signatures: int = 0
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = Webhook(self.secrets[request.path]).verify(body, dict(request.headers))
        except Exception:  # any failure to verify counts as a bad signature
            self.bad_signatures += 1
            return web.Response(status=401)
        self.received.append((request.path, request.headers["webhook-id"], payload))
        self.hosts.append(request.headers.get("host", ""))
        if self.delay:
            await asyncio.sleep(self.delay)
        statuses = self.script.get(request.path) or []
        return web.Response(status=statuses.pop(0) if statuses else 200)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def serve(receiver: Receiver, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """`receiver` on a free loopback port (https with `ssl_context`); its port is set on it."""
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    receiver.port = runner.addresses[0][1]
    return runner


@dataclass
class World:
    db: Database
    scope: TenantScope
    receiver: Receiver

    def run(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        return self.db.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with embedded_database() as db:
        db.run(upgrade(db.engine))

        async def make(session: AsyncSession) -> TenantScope:
            tenant, _ = await bootstrap_tenant(session, "webhooks", "us")
            return TenantScope(tenant.id, "us")

        scope = db.run(run_transaction(db.sessions, make))
        receiver = Receiver()
        runner = db.run(serve(receiver))
        try:
            yield World(db, scope, receiver)
        finally:
            db.run(runner.cleanup())


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def add_endpoint(w: World, url: str, event_types: list[str] | None = None) -> uuid.UUID:
    secret = new_secret()
    path = url.split(str(w.receiver.port), 1)[-1] if str(w.receiver.port) in url else url
    w.receiver.secrets[path] = secret
    endpoint_id = uuid.uuid4()

    async def add(session: AsyncSession) -> None:
        session.add(w.scope.new(WebhookEndpoint, id=endpoint_id, url=url, signing_secret=secret,
                                event_types=event_types or [], enabled=True))

    w.run(run_transaction(w.db.sessions, add, scope=w.scope))
    return endpoint_id


def disable(w: World, endpoint_id: uuid.UUID) -> None:
    async def off(session: AsyncSession) -> None:
        row = (await session.execute(scoped_select(WebhookEndpoint, w.scope)
                                     .where(WebhookEndpoint.id == endpoint_id))).scalar_one()
        row.enabled = False

    w.run(run_transaction(w.db.sessions, off, scope=w.scope))


def emit(w: World, kind: str = "call_created", data: dict[str, Any] | None = None) -> str:
    """Ingest one call event (which enqueues the deliveries) and return its event id."""
    call_id = str(uuid.uuid4())
    envelope = CallEventEnvelope.new(call_id=call_id, tenant_id=str(w.scope.tenant_id), region="us",
                                     kind=kind, event_id=f"{call_id}:{kind}",
                                     data=data or {"direction": "inbound"})
    w.run(ingest_event(w.db.sessions, envelope))
    return envelope.event_id


def deliveries(w: World, endpoint_id: uuid.UUID) -> list[WebhookDelivery]:
    async def q(session: AsyncSession) -> list[WebhookDelivery]:
        stmt = scoped_select(WebhookDelivery, w.scope).where(WebhookDelivery.endpoint_id == endpoint_id)
        return list((await session.execute(stmt)).scalars())

    return w.run(run_transaction(w.db.sessions, q, scope=w.scope))


async def drive(dispatcher: WebhookDispatcher, finished: Callable[[], Awaitable[bool]]) -> None:
    """Run dispatch rounds until `finished` (bounded by the caller's timeout, not asserted)."""
    while not await finished():
        await dispatcher.run_once()
        await asyncio.sleep(0.02)


def all_final(w: World, endpoint_id: uuid.UUID) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async def q(session: AsyncSession) -> bool:
            stmt = scoped_select(WebhookDelivery, w.scope).where(WebhookDelivery.endpoint_id == endpoint_id)
            return all(d.status in ("delivered", "failed") for d in (await session.execute(stmt)).scalars())

        return await run_transaction(w.db.sessions, q, scope=w.scope)

    return check


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_signed_deliveries_reach_the_receiver(world: World) -> None:
    endpoint = add_endpoint(world, world.receiver.url("/ok"))
    created = emit(world)
    ended = emit(world, "call_ended", {"disposition": "booked", "duration_s": 3})
    dispatcher = WebhookDispatcher(world.db.sessions, "us", allow_private=True, retry=FAST)
    try:
        world.run(drive(dispatcher, all_final(world, endpoint)))
    finally:
        world.run(dispatcher.stop())
    got = {wid: body for path, wid, body in world.receiver.received if path == "/ok"}
    assert set(got) == {created, ended} and world.receiver.bad_signatures == 0
    assert got[created]["type"] == "call.created" and got[created]["data"]["direction"] == "inbound"
    # call_ended also creates the call (out of order) but only call.ended is published for it.
    assert got[ended]["type"] == "call.ended" and got[ended]["data"]["disposition"] == "booked"
    for row in deliveries(world, endpoint):
        assert (row.status, row.attempts, row.response_status, row.last_error) == ("delivered", 1, 200, None)
        assert row.delivered_at is not None and row.next_attempt_at is None
    disable(world, endpoint)


def test_a_failed_attempt_is_retried_until_delivered(world: World) -> None:
    endpoint = add_endpoint(world, world.receiver.url("/flaky"))
    world.receiver.script["/flaky"] = [500]
    event_id = emit(world)
    dispatcher = WebhookDispatcher(world.db.sessions, "us", allow_private=True, retry=FAST)
    try:
        world.run(drive(dispatcher, all_final(world, endpoint)))
    finally:
        world.run(dispatcher.stop())
    [row] = deliveries(world, endpoint)
    assert (row.status, row.attempts, row.response_status, row.last_error) == ("delivered", 2, 200, None)
    hits = [wid for path, wid, _ in world.receiver.received if path == "/flaky"]
    assert hits == [event_id, event_id]  # the same webhook-id on the retry, so receivers can dedupe
    disable(world, endpoint)


def test_a_dead_endpoint_fails_after_max_attempts(world: World) -> None:
    dead_url = f"http://127.0.0.1:{closed_port()}/hook?token=do-not-log-me"
    dead = add_endpoint(world, dead_url)
    not_http = add_endpoint(world, "file:///etc/passwd")
    emit(world)
    dispatcher = WebhookDispatcher(world.db.sessions, "us", allow_private=True, retry=FAST, timeout=2.0)
    try:
        world.run(drive(dispatcher, all_final(world, dead)))
        world.run(drive(dispatcher, all_final(world, not_http)))
    finally:
        world.run(dispatcher.stop())
    [row] = deliveries(world, dead)
    assert (row.status, row.attempts, row.response_status) == ("failed", FAST.max_attempts, None)
    assert row.last_error and "ConnectError" in row.last_error and "do-not-log-me" not in row.last_error
    [refused] = deliveries(world, not_http)
    assert (refused.status, refused.attempts) == ("failed", 1)  # never sent, never retried
    assert refused.last_error == "the URL must be http or https"
    disable(world, dead)
    disable(world, not_http)


def test_a_production_dispatcher_never_posts_into_the_cells_own_network(world: World) -> None:
    # Loopback over http: refused before any connection, and not retried (a tenant's URL must not
    # reach the cell's NATS monitor, database or cloud metadata service).
    endpoint = add_endpoint(world, world.receiver.url("/inside"))
    emit(world)
    dispatcher = WebhookDispatcher(world.db.sessions, "us", retry=FAST)
    try:
        world.run(drive(dispatcher, all_final(world, endpoint)))
    finally:
        world.run(dispatcher.stop())
    [row] = deliveries(world, endpoint)
    assert (row.status, row.attempts, row.response_status) == ("failed", 1, None)
    assert not [hit for hit in world.receiver.received if hit[0] == "/inside"]
    disable(world, endpoint)


def test_two_dispatchers_never_send_one_delivery_twice(world: World) -> None:
    endpoint = add_endpoint(world, world.receiver.url("/shared"))
    events = {emit(world) for _ in range(30)}
    world.receiver.delay = 0.01  # keeps sends in flight while the other dispatcher polls

    async def main() -> list[WebhookDispatcher]:
        pair = [WebhookDispatcher(world.db.sessions, "us", allow_private=True, retry=FAST, poll_interval=0.01,
                                  batch=4)
                for _ in range(2)]
        for dispatcher in pair:
            await dispatcher.start()
        try:
            finished = all_final(world, endpoint)
            while not await finished():
                await asyncio.sleep(0.05)
        finally:
            for dispatcher in pair:
                await dispatcher.stop()
        return pair

    try:
        pair = world.run(main())
    finally:
        world.receiver.delay = 0.0
    sent = Counter(wid for path, wid, _ in world.receiver.received if path == "/shared")
    assert set(sent) == events and max(sent.values()) == 1
    assert sum(d.stats.attempts for d in pair) == len(events)
    assert all(row.status == "delivered" and row.attempts == 1 for row in deliveries(world, endpoint))


def test_wake_sends_at_once_and_payloads_are_redacted(world: World) -> None:
    """The consumer calls wake() after an event that enqueued deliveries; without it this test would
    wait an hour for the next poll (and time out)."""
    endpoint = add_endpoint(world, world.receiver.url("/woken"), ["call.transcript"])
    call_id = str(uuid.uuid4())

    def said(seq: int, text: str) -> CallEventEnvelope:
        return CallEventEnvelope.new(call_id=call_id, tenant_id=str(world.scope.tenant_id), region="us",
                                     kind="transcript", event_id=f"{call_id}:MZ:{seq}", data={"text": text})

    async def main() -> None:
        dispatcher = WebhookDispatcher(world.db.sessions, "us", allow_private=True, retry=FAST,
                                       poll_interval=3600)
        await dispatcher.start()
        try:
            for seq, text in enumerate(["my card is 4242 4242 4242 4242",
                                        "call me on five five five one two three four"], start=1):
                result = await apply_event(world.db.sessions, said(seq, text))
                assert result.outcome is IngestOutcome.APPLIED and result.deliveries >= 1  # + open endpoints
                dispatcher.wake()
                # The second wake comes while the dispatcher sleeps after sending the first.
                while len([r for r in world.receiver.received if r[0] == "/woken"]) < seq:
                    await asyncio.sleep(0.02)
            again = await apply_event(world.db.sessions, said(1, "my card is 4242 4242 4242 4242"))
            assert again.outcome is IngestOutcome.DUPLICATE and again.deliveries == 0
        finally:
            await dispatcher.stop()

    world.run(main())
    texts = [body["data"]["text"] for path, _, body in world.receiver.received if path == "/woken"]
    assert texts == ["my card is [card]", "call me on [phone]"]
    assert all(row.status == "delivered" for row in deliveries(world, endpoint))
    disable(world, endpoint)


# --- the send connects to the address that was checked (no DNS rebinding) --------------------------


def pin_name(monkeypatch: pytest.MonkeyPatch, name: str, address: str = "127.0.0.1") -> None:
    """The resolver check answers `address` for `name`, a name the system's DNS cannot resolve: a
    delivery arrives only if the sender connects to the checked answer instead of resolving again."""
    real = webhooks.resolve_public

    async def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
        if host == name:
            return [address]
        return await real(host, port, allow_private=allow_private)

    monkeypatch.setattr(webhooks, "resolve_public", resolve)


def test_a_send_goes_to_the_checked_address_with_the_urls_host_name(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_name(monkeypatch, "hooks.rebind.invalid")
    endpoint = add_endpoint(world, f"http://hooks.rebind.invalid:{world.receiver.port}/pinned")
    emit(world)
    dispatcher = WebhookDispatcher(world.db.sessions, "us", allow_private=True, retry=FAST)
    world.run(drive(dispatcher, all_final(world, endpoint)))
    [delivery] = deliveries(world, endpoint)
    assert delivery.status == "delivered", delivery.last_error
    assert f"hooks.rebind.invalid:{world.receiver.port}" in world.receiver.hosts
    world.run(dispatcher.stop())


@pytest.fixture(scope="module")
def tls_receiver(world: World) -> Iterator[tuple[trustme.CA, int, Receiver]]:
    """An https receiver whose certificate names hooks.example.test only."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.test").configure_cert(server_ctx)
    receiver = Receiver()
    runner = world.run(serve(receiver, server_ctx))
    try:
        yield ca, receiver.port, receiver
    finally:
        world.run(runner.cleanup())


def test_https_sends_check_the_certificate_against_each_urls_host_name(
        world: World, tls_receiver: tuple[trustme.CA, int, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ca, port, receiver = tls_receiver
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    # One client for both, as in production: a connection kept from the first host must not carry
    # the second host's delivery (both names resolve to the same address).
    client = httpx.AsyncClient(verify=client_ctx, follow_redirects=False, trust_env=False)
    dispatcher = WebhookDispatcher(world.db.sessions, "us", allow_private=True, client=client,
                                   retry=RetryPolicy(delays=(0.05,), max_attempts=1, jitter=0.0))
    results = {}
    for name in ("hooks.example.test", "other.example.test"):
        pin_name(monkeypatch, name)
        path = f"/tls-{name}"
        endpoint = add_endpoint(world, f"https://{name}:{port}{path}")
        # add_endpoint filed the secret for the plain receiver; the TLS receiver verifies with it.
        receiver.secrets[path] = next(v for k, v in world.receiver.secrets.items() if k.endswith(path))
        emit(world)
        world.run(drive(dispatcher, all_final(world, endpoint)))
        [results[name]] = deliveries(world, endpoint)
    world.run(client.aclose())
    good, bad = results["hooks.example.test"], results["other.example.test"]
    assert good.status == "delivered", good.last_error
    assert f"hooks.example.test:{port}" in receiver.hosts
    # The certificate does not name the second host: nothing is sent, and the log says why.
    assert bad.status == "failed" and "certificate" in (bad.last_error or "").lower()
    assert all(p != "/tls-other.example.test" for p, _, _ in receiver.received)
