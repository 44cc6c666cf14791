"""Retention and erasure on a real nats-server (JetStream call stream and call-state bucket), the
embedded PostgreSQL and a region object store: exactly the chosen calls disappear from every store,
other calls and other tenants' calls stay, and each run issues a signed deletion certificate that is
kept in the audit log and names no deleted data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from control_api_fixtures import AGENT, FAST, Api, api_with, control_api, fetch, insert, scope_for

from cells.contract.jetstream import (
    call_state_bucket_name,
    call_stream_name,
    ensure_call_state_bucket,
    ensure_call_stream,
)
from cells.launcher.nats import NatsSupercluster
from control.db.models import (
    AuditLog,
    Call,
    CallEvent,
    Recording,
    ToolRecord,
    Turn,
    UsageRecord,
    WebhookDelivery,
)
from control.db.models import WebhookEndpoint as Endpoint
from control.retention.certificate import verify
from control.retention.scheduler import RetentionScheduler, live_stores
from regions.objectstore import RegionStore

KEY = bytes(range(32))
CALLER = "+447700900123"
OTHER = "+447700900999"
ERASED = "+447700900555"
CLINIC = "+442079460000"
NOW = datetime.now(UTC)
TABLES = (Call, Turn, CallEvent, Recording, UsageRecord)


@dataclass
class World:
    api: Api
    nats_url: str
    store: RegionStore
    root: Path
    agents: dict[str, uuid.UUID] = field(default_factory=dict)

    def agent(self, label: str) -> uuid.UUID:
        """An agent of the tenant (the one its record tools' rows name), made on first use."""
        if label not in self.agents:
            owner = self.api.tokens[f"{label}:owner"]
            r = self.api.call("POST", self.api.tenant_path(label, "/agents"), token=owner, json=AGENT)
            assert r.status == 201, r.text
            self.agents[label] = uuid.UUID(r.body["id"])
        return self.agents[label]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("objects")
    nats_dir = tmp_path_factory.mktemp("nats")
    with NatsSupercluster(nats_dir, ("eu", "in", "us")) as cluster, control_api(**FAST) as base:
        url = cluster.url("eu")

        async def declare() -> None:
            nc = await nats.connect(url)
            await ensure_call_stream(nc.jetstream(), "eu")
            await ensure_call_state_bucket(nc.jetstream(), "eu")
            await nc.close()

        base.db.run(declare())
        with api_with(base, nats_url=url, object_store_root=root, secrets_key=KEY) as api:
            yield World(api, url, RegionStore(root, "eu"), root)


def seed_call(w: World, label: str, *, age_days: float, number: str = CALLER,
              direction: str = "inbound", recording_age_days: float | None = None,
              clinic: str = CLINIC) -> str:
    """A finished call in every store: rows (call, turn, event, recording, usage, webhook delivery),
    three JetStream events, its live-state entry, and three recording segments: one in the database,
    one known only to the live state (a worker wrote it after the last event reached the database),
    one known to neither (the live state expired before that)."""
    scope = scope_for(w.api, label)
    call_id = uuid.uuid4()
    started = NOW - timedelta(days=age_days)
    recorded = NOW - timedelta(days=recording_age_days if recording_age_days is not None else age_days)
    frm, to = (number, clinic) if direction == "inbound" else (clinic, number)
    keys = [RegionStore.key(scope.tenant_id, f"{call_id}-MZ{i}.wav") for i in (1, 2, 3)]
    for key in keys:
        w.store.put(key, b"RIFF" + os.urandom(64))
    endpoint = scope.new(Endpoint, id=uuid.uuid4(), url="https://hooks.example.com/x",
                         signing_secret="s" * 32, event_types=["call.transcript"], enabled=True)
    sid = f"CA{call_id.hex}"
    insert(w.api, label, endpoint,
           scope.new(Call, id=call_id, direction=direction, from_e164=frm, to_e164=to, status="completed",
                     started_at=started, ended_at=started + timedelta(minutes=2), carrier_call_sid=sid),
           scope.new(Turn, call_id=call_id, seq=1, speaker="caller", text=f"my number is {number}",
                     start_ms=0, end_ms=900),
           scope.new(CallEvent, call_id=call_id, event_id=f"{call_id}:1", kind="transcript",
                     payload={"text": "hello"}, occurred_at=started),
           scope.new(Recording, call_id=call_id, object_key=keys[0], size_bytes=68, created_at=recorded),
           scope.new(UsageRecord, call_id=call_id, billable_seconds=120),
           scope.new(WebhookDelivery, endpoint_id=endpoint.id, event_id=f"{call_id}:1",
                     event_type="call.transcript", payload={"data": {"text": "hello"}}, status="delivered"),
           # What a record tool kept: one row that names the call, one written before the call row
           # existed (only the carrier's call id): both hold the caller's number.
           *(scope.new(ToolRecord, agent_id=w.agent(label), call_id=known, call_sid=sid, tool="record",
                       kind="reservation", arguments={"name": "Ada", "phone": number},
                       idempotency_key=f"{call_id.hex}{i}") for i, known in enumerate((call_id, None))))

    async def live() -> None:
        nc = await nats.connect(w.nats_url)
        js = nc.jetstream()
        for kind in ("call_created", "transcript", "call_ended"):
            subject = f"eu.calls.{scope.tenant_id}.{call_id}.{kind}"
            await js.publish(subject, json.dumps({"from": number}).encode())
        kv = await js.key_value(call_state_bucket_name("eu"))
        await kv.put(str(call_id), json.dumps({"call_id": str(call_id), "recordings": keys[:2]}).encode())
        await nc.close()

    w.api.db.run(live())
    return str(call_id)


def where(w: World, label: str, call_id: str) -> dict[str, int]:
    """How much of the call each store holds."""
    tenant = w.api.tenants[label]
    out = {m.__tablename__: len(fetch(w.api, m, **({"id": uuid.UUID(call_id)} if m is Call
                                                    else {"call_id": uuid.UUID(call_id)})))
           for m in TABLES}
    out["webhook_deliveries"] = len(fetch(w.api, WebhookDelivery, event_id=f"{call_id}:1"))
    out["tool_records"] = len(fetch(w.api, ToolRecord, call_sid=f"CA{uuid.UUID(call_id).hex}",
                                    tenant_id=tenant))

    async def live() -> tuple[int, int]:
        nc = await nats.connect(w.nats_url)
        js = nc.jetstream()
        info = await js.stream_info(call_stream_name("eu"), subjects_filter=f"eu.calls.{tenant}.{call_id}.>")
        bucket = call_state_bucket_name("eu")
        state = await js.stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.{call_id}")
        await nc.close()
        return sum((info.state.subjects or {}).values()), sum((state.state.subjects or {}).values())

    out["jetstream"], out["kv"] = w.api.db.run(live())
    folder = w.root / w.store.region.bucket / str(tenant)
    out["objects"] = len(list(folder.glob(f"{call_id}-*"))) if folder.is_dir() else 0
    return out


FULL = {"calls": 1, "turns": 1, "call_events": 1, "recordings": 1, "usage_ledger": 1, "webhook_deliveries": 1,
        "tool_records": 2, "jetstream": 3, "kv": 1, "objects": 3}
GONE = dict.fromkeys(FULL, 0)


def stores_of(cert: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {s["store"]: (s["found"], s["deleted"], s["remaining"]) for s in cert["stores"]}


def audited(w: World, label: str, cert_id: str) -> dict[str, Any]:
    [row] = [r for r in fetch(w.api, AuditLog, tenant_id=w.api.tenants[label])
             if r.details.get("certificate", {}).get("id") == cert_id]
    return row.details["certificate"]


def test_retention_deletes_exactly_the_expired_call_everywhere(world: World) -> None:
    w = world
    old, fresh = seed_call(w, "a", age_days=40), seed_call(w, "a", age_days=1)
    other_tenant = seed_call(w, "b", age_days=40)
    owner = w.api.tokens["a:owner"]
    r = w.api.call("PUT", w.api.tenant_path("a", "/retention"), token=owner, json={"call_days": 30})
    assert r.status == 200 and r.body == {"call_days": 30, "recording_days": None}
    r = w.api.call("POST", w.api.tenant_path("a", "/retention/run"), token=owner)
    assert r.status == 200, r.text
    [cert] = r.body["certificates"]
    assert where(w, "a", old) == GONE
    assert where(w, "a", fresh) == FULL and where(w, "b", other_tenant) == FULL
    assert cert["calls"] == [old] and cert["reason"] == "retention" and cert["complete"] is True
    stores = stores_of(cert)
    assert stores["jetstream:CALLS_EU"] == (3, 3, 0) and stores["kv:call_state_eu"] == (1, 1, 0)
    assert stores["object_store:eu"] == (3, 3, 0)
    for table in ("calls", "turns", "call_events", "recordings", "usage_ledger", "webhook_deliveries"):
        assert stores[f"database:{table}"] == (1, 1, 0), table
    assert stores["database:tool_records"] == (2, 2, 0)
    assert cert["criteria"]["usage_deleted"]["billable_seconds"] == 120
    assert verify(cert, KEY) and not verify({**cert, "calls": []}, KEY) and not verify(cert, b"k" * 32)
    assert audited(w, "a", cert["id"]) == cert
    assert CALLER not in json.dumps(cert) and "my number" not in json.dumps(cert)
    again = w.api.call("POST", w.api.tenant_path("a", "/retention/run"), token=owner)
    assert again.body == {"certificates": []} and where(w, "a", fresh) == FULL


def test_recordings_can_expire_before_their_call(world: World) -> None:
    w = world
    call = seed_call(w, "a", age_days=10, recording_age_days=10)
    owner = w.api.tokens["a:owner"]
    w.api.call("PUT", w.api.tenant_path("a", "/retention"), token=owner,
               json={"call_days": 30, "recording_days": 5})
    [cert] = w.api.call("POST", w.api.tenant_path("a", "/retention/run"), token=owner).body["certificates"]
    assert cert["criteria"]["scope"] == "recordings" and cert["calls"] == [call]
    left = where(w, "a", call)
    # The recording row and the object it names are gone; the call, its events and live state stay
    # (the segments no row names go with the call).
    assert left == {**FULL, "recordings": 0, "objects": 2}
    assert stores_of(cert)["object_store:eu"] == (1, 1, 0)
    w.api.call("PUT", w.api.tenant_path("a", "/retention"), token=owner, json={})


def test_erasure_by_number_removes_that_callers_calls_only(world: World) -> None:
    w = world
    # A number of its own: the calls earlier tests left for CALLER would be erased too (rightly).
    inbound = seed_call(w, "a", age_days=2, number=ERASED)
    outbound = seed_call(w, "a", age_days=2, number=ERASED, direction="outbound")
    someone_else = seed_call(w, "a", age_days=2, number=OTHER)
    # The number as the tenant's own side of a call selects nothing: the clinic's line is no caller.
    own_line = seed_call(w, "a", age_days=2, number=OTHER, clinic=ERASED)
    other_tenant = seed_call(w, "b", age_days=2, number=ERASED)
    path = w.api.tenant_path("a", "/erasures")
    # Another tenant's record that names the same carrier call id (a forged or reused id) is not a's.
    b_scope = scope_for(w.api, "b")
    insert(w.api, "b", b_scope.new(ToolRecord, agent_id=w.agent("b"), call_id=None,
                                   call_sid=f"CA{uuid.UUID(inbound).hex}", tool="record", kind="message",
                                   arguments={"text": "b's own"}, idempotency_key=f"b{inbound}"))
    refused = w.api.call("POST", path, token=w.api.tokens["a:operator"], json={"phone_number": ERASED})
    assert refused.status == 403
    bad = w.api.call("POST", path, token=w.api.tokens["a:owner"], json={"phone_number": "07700 900123"})
    assert bad.status == 422 and where(w, "a", inbound) == FULL
    r = w.api.call("POST", path, token=w.api.tokens["a:owner"], json={"phone_number": ERASED})
    assert r.status == 200, r.text
    [cert] = r.body["certificates"]
    assert sorted(cert["calls"]) == sorted([inbound, outbound]) and cert["reason"] == "erasure"
    assert where(w, "a", inbound) == GONE and where(w, "a", outbound) == GONE
    for label, kept in (("a", someone_else), ("a", own_line), ("b", other_tenant)):
        assert where(w, label, kept) == FULL
    assert stores_of(cert)["database:calls"] == (2, 2, 0)
    kept_b = fetch(w.api, ToolRecord, idempotency_key=f"b{inbound}")
    assert [r.tenant_id for r in kept_b] == [w.api.tenants["b"]]
    assert stores_of(cert)["database:tool_records"] == (4, 4, 0)
    assert stores_of(cert)["jetstream:CALLS_EU"] == (6, 6, 0)
    assert ERASED not in json.dumps(cert) and ERASED not in json.dumps(audited(w, "a", cert["id"]))
    assert verify(cert, KEY)


def test_the_command_applies_every_tenants_retention_in_the_region(world: World) -> None:
    w = world
    old_b = seed_call(w, "b", age_days=50)
    fresh_b = seed_call(w, "b", age_days=3)
    r = w.api.call("PUT", w.api.tenant_path("b", "/retention"), token=w.api.tokens["b:owner"],
                   json={"call_days": 7})
    assert r.status == 200
    env = {**os.environ, "AUTOSPEAK_SECRETS_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
    done = subprocess.run(
        [sys.executable, "-m", "control.retention", "--region", "eu", "--database-url", w.api.db.url,
         "--nats-url", w.nats_url, "--object-store", str(w.root)],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    certs = [json.loads(line) for line in done.stdout.splitlines()]
    deleted = {c for cert in certs for c in cert["calls"]}
    assert old_b in deleted and fresh_b not in deleted
    assert where(w, "b", old_b) == GONE and where(w, "b", fresh_b) == FULL
    assert all(verify(c, KEY) for c in certs)  # the env key is KEY in base64


def test_the_cells_periodic_run_applies_retention(world: World) -> None:
    """What the cell's runtime starts: one pass of RetentionScheduler over the region's tenants."""
    w = world
    old = seed_call(w, "a", age_days=100)
    owner = w.api.tokens["a:owner"]
    assert w.api.call("PUT", w.api.tenant_path("a", "/retention"), token=owner,
                      json={"call_days": 90}).status == 200

    async def one_pass() -> int:
        nc = await nats.connect(w.nats_url)
        try:
            stores = live_stores("eu", nc.jetstream(), w.root, KEY)
            scheduler = RetentionScheduler(w.api.db.sessions, "eu", stores)
            return await scheduler.run_once()
        finally:
            await nc.close()

    assert w.api.db.run(one_pass()) >= 1
    assert where(w, "a", old) == GONE
    [row] = [r for r in fetch(w.api, AuditLog, tenant_id=w.api.tenants["a"])
             if old in r.details.get("certificate", {}).get("calls", [])]
    assert row.actor == "system:retention" and row.via == "system" and row.action == "retention.purge"


def test_without_an_event_store_nothing_is_deleted_and_without_an_object_store_it_is_said(
        world: World) -> None:
    """A REST-only process (no NATS) refuses: the rows are how any later run finds a call, so deleting
    them alone would strand its events and live state. A process with no object store deletes the
    rest, and its certificate does not claim the recordings are gone."""
    w = world
    number = "+447700900777"
    call = seed_call(w, "a", age_days=1, number=number)
    body = {"phone_number": number}
    with api_with(w.api) as bare:
        r = bare.call("POST", bare.tenant_path("a", "/erasures"), token=bare.tokens["a:owner"], json=body)
        assert r.status == 503 and where(w, "a", call) == FULL
        r = bare.call("POST", bare.tenant_path("a", "/retention/run"), token=bare.tokens["a:owner"])
        assert r.status == 503
    with api_with(w.api, nats_url=w.nats_url) as no_objects:
        r = no_objects.call("POST", no_objects.tenant_path("a", "/erasures"),
                            token=no_objects.tokens["a:owner"], json=body)
    assert r.status == 200, r.text
    [cert] = r.body["certificates"]
    assert cert["calls"] == [call] and cert["complete"] is False
    assert {s["store"] for s in cert["stores"] if not s["checked"]} == {"object_store:eu"}
    assert where(w, "a", call) == {**GONE, "objects": 3}
