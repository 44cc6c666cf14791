"""The residency audit on a real PostgreSQL, a real NATS supercluster and a real (directory) object store.

A clean platform (tenants in all three regions, rows in several regional tables, call events in each
region's stream, live call state, recordings in each region's store) audits clean, as a function and
as `python -m control.audit`. Then one violation at a time is planted, by the means each store really
allows, and must be reported with exit code 1; each plant is undone before the next test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from db_fixtures import Database, embedded_database
from nats.aio.client import Client
from nats.js.api import Placement
from sqlalchemy import make_url, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy_cockroachdb.asyncpg import CockroachDBDialect_asyncpg

from cells.contract.envelope import CallEventEnvelope
from cells.contract.jetstream import (
    call_stream_name,
    call_subject,
    ensure_call_state_bucket,
    ensure_call_stream,
    publish_event,
)
from cells.launcher import NatsSupercluster
from control.audit.__main__ import main as audit_main
from control.audit.residency import (
    CRDB_LOCALITIES,
    AuditReport,
    Violation,
    audit_residency,
    crdb_region_query,
    pg_partition_query,
)
from control.db.models import (
    Agent,
    AuditLog,
    Call,
    CallEvent,
    Consent,
    Plan,
    Recording,
    Tenant,
    Turn,
    UsageRecord,
)
from control.db.session import run_transaction
from control.db.tenancy import TenantScope
from control.db.topology import REGIONS
from regions.objectstore import RegionStore

ROOT = Path(__file__).resolve().parent.parent
TABLES_SEEDED = ("agents", "audit_log", "call_events", "calls", "consents", "recordings", "turns",
                 "usage_ledger")
HOMES = {"eu": "eu", "eu2": "eu", "in": "in", "us": "us"}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class Platform:
    db: Database
    nats: NatsSupercluster
    store_root: Path
    scopes: dict[str, TenantScope]
    calls: dict[str, uuid.UUID]
    recordings: dict[str, str]  # label -> object key

    @property
    def nats_urls(self) -> dict[str, str]:
        return {r: self.nats.url(r) for r in REGIONS}

    @property
    def nats_arg(self) -> str:
        return ",".join(f"{r}={u}" for r, u in self.nats_urls.items())

    def store(self, region: str) -> RegionStore:
        return RegionStore(self.store_root, region)

    def audit(self) -> AuditReport:
        return self.db.run(audit_residency(self.db.url, self.nats_urls, self.store_root))

    def cli_args(self, *extra: str) -> list[str]:
        return ["residency", "--database-url", self.db.url, "--nats-url", self.nats_arg,
                "--object-store", str(self.store_root), *extra]

    def tenant(self, label: str) -> str:
        return str(self.scopes[label].tenant_id)


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with embedded_database() as db, NatsSupercluster(tmp_path_factory.mktemp("nats"), REGIONS) as sc:
        # The schema is applied by the migrations CLI, as the compose init service does.
        up = _cli("control.db", "upgrade", "--database-url", db.url)
        assert up.returncode == 0, up.stderr
        assert "upgraded base -> 0005" in up.stdout
        password = make_url(db.url).password
        assert not password or str(password) not in up.stdout
        current = _cli("control.db", "current", "--database-url", db.url)
        assert current.returncode == 0 and current.stdout.strip() == "0005", current.stderr
        again = _cli("control.db", "upgrade", "--database-url", db.url)
        assert again.returncode == 0 and "already at revision 0005" in again.stdout

        store_root = tmp_path_factory.mktemp("objects")
        scopes = {label: TenantScope(uuid.uuid4(), home) for label, home in HOMES.items()}
        calls, recordings = db.run(_seed_database(db, scopes))
        for label, key in recordings.items():
            RegionStore(store_root, scopes[label].region).put(key, b"RIFF" + bytes(60))
        plat = Platform(db, sc, store_root, scopes, calls, recordings)
        db.run(_seed_nats(plat))
        yield plat


async def _seed_database(
    db: Database, scopes: dict[str, TenantScope]
) -> tuple[dict[str, uuid.UUID], dict[str, str]]:
    async def directory(session: AsyncSession) -> None:
        session.add(Plan(id="starter", name="Starter", monthly_price_cents=0, included_minutes=100,
                         limits={}))
        await session.flush()
        for label, scope in scopes.items():
            session.add(Tenant(id=scope.tenant_id, name=f"tenant {label}", home_region=scope.region,
                               plan="starter"))

    await run_transaction(db.sessions, directory)
    calls: dict[str, uuid.UUID] = {}
    keys: dict[str, str] = {}
    for label, scope in scopes.items():

        async def tenant_data(session: AsyncSession, scope: TenantScope = scope) -> tuple[uuid.UUID, str]:
            agent = scope.new(Agent, name="Reception", persona="friendly")
            session.add(agent)
            await session.flush()
            call = scope.new(Call, agent_id=agent.id, direction="inbound", from_e164="+441234567890",
                             to_e164="+442071234567", carrier_call_sid=f"CA{uuid.uuid4().hex}")
            session.add(call)
            await session.flush()
            key = RegionStore.key(scope.tenant_id, f"{call.id}.wav")
            session.add_all([
                scope.new(Turn, call_id=call.id, seq=1, speaker="caller", text="hello", start_ms=0,
                          end_ms=900, interrupted=False),
                scope.new(Turn, call_id=call.id, seq=2, speaker="agent", text="hi", start_ms=1000,
                          end_ms=1500, interrupted=False),
                scope.new(CallEvent, call_id=call.id, event_id=f"{call.id}:created", kind="call_created",
                          payload={}, occurred_at=call.started_at),
                scope.new(Recording, call_id=call.id, object_key=key, duration_ms=1500, size_bytes=64,
                          paused_segments=[]),
                scope.new(UsageRecord, call_id=call.id, billable_seconds=2),
                scope.new(Consent, subject_e164="+441234567890", kind="recording", granted=True,
                          source="ivr"),
                scope.new(AuditLog, actor="test", action="seed", target_type="call", target_id=str(call.id),
                          details={}),
            ])
            return call.id, key

        calls[label], keys[label] = await run_transaction(db.sessions, tenant_data, scope=scope)
    return calls, keys


def _envelope(plat: Platform, label: str, kind: str, event_id: str) -> CallEventEnvelope:
    scope = plat.scopes[label]
    return CallEventEnvelope.new(call_id=str(plat.calls[label]), tenant_id=str(scope.tenant_id),
                                 region=scope.region, kind=kind, event_id=event_id, source="test")


async def _seed_nats(plat: Platform) -> None:
    for region in REGIONS:
        async with connect(plat.nats.url(region)) as nc:
            js = nc.jetstream()
            await ensure_call_stream(js, region)
            kv = await ensure_call_state_bucket(js, region)
            for label, scope in plat.scopes.items():
                if scope.region != region:
                    continue
                call_id = plat.calls[label]
                for kind, event_id in (("call_created", f"{call_id}:created"),
                                       ("call_ended", f"{call_id}:s1:9")):
                    env = _envelope(plat, label, kind, event_id)
                    await publish_event(js, env.subject, env.to_bytes(), msg_id=env.event_id)
                state = {"call_id": str(call_id), "tenant_id": str(scope.tenant_id), "region": region,
                         "status": "ended", "history": []}
                await kv.put(str(call_id), json.dumps(state).encode())


def _only(report: AuditReport, check: str) -> list[Violation]:
    found = [v for v in report.violations if v.check == check]
    assert found, report.format()
    return found


# --- clean --------------------------------------------------------------------------------------


def test_clean_platform_audits_clean(platform: Platform) -> None:
    report = platform.audit()
    assert report.clean, report.format()
    assert report.dialect == "postgresql"
    expected_tenants = {r: sum(1 for h in HOMES.values() if h == r) for r in REGIONS}
    for region, summary in report.regions.items():
        assert summary.tenants == expected_tenants[region]
        for table_name in TABLES_SEEDED:
            per_tenant = 2 if table_name == "turns" else 1
            assert summary.rows[table_name] == per_tenant * expected_tenants[region], (region, table_name)
        assert summary.events == 2 * expected_tenants[region]
        assert summary.call_states == expected_tenants[region]
        assert summary.objects == expected_tenants[region]
        assert summary.violations == 0
    text_report = report.format()
    assert "Residency audit (postgresql): CLEAN" in text_report
    assert "rows checked per table:" in text_report and "violations:" not in text_report


def test_command_line_audit_is_clean_with_exit_0(platform: Platform) -> None:
    proc = _cli("control.audit", *platform.cli_args("--json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["clean"] is True and doc["violations"] == []
    assert {r: doc["regions"][r]["tenants"] for r in REGIONS} == {"eu": 2, "in": 1, "us": 1}
    assert doc["regions"]["eu"]["events"] == 4


def test_audit_leaves_durable_consumers_where_they_were(platform: Platform) -> None:
    """The control plane's durable consumer keeps its position: the audit reads with its own
    ephemeral ordered consumer, which is gone once the audit has read."""
    stream = call_stream_name("eu")

    async def durable_position(ack_first: bool) -> tuple[int, int, int]:
        async with connect(platform.nats.url("eu")) as nc:
            js = nc.jetstream()
            sub = await js.pull_subscribe("eu.calls.>", durable="control-events", stream=stream)
            if ack_first:
                [msg] = await sub.fetch(1, timeout=5)
                await msg.ack_sync()
            info = await js.consumer_info(stream, "control-events")
            return info.ack_floor.stream_seq, info.num_pending, info.num_ack_pending

    async def consumers() -> list[str]:
        async with connect(platform.nats.url("eu")) as nc:
            return sorted(c.name for c in await nc.jetstream().consumers_info(stream))

    async def drop_durable() -> None:
        async with connect(platform.nats.url("eu")) as nc:
            await nc.jetstream().delete_consumer(stream, "control-events")

    before = platform.db.run(durable_position(ack_first=True))
    try:
        assert platform.audit().clean
        assert platform.db.run(durable_position(ack_first=False)) == before
        assert platform.db.run(consumers()) == ["control-events"]
    finally:
        platform.db.run(drop_durable())


# --- planted violations -----------------------------------------------------------------------


def test_event_of_an_eu_tenant_in_the_us_stream_is_reported(platform: Platform) -> None:
    eu_tenant, call_id = platform.tenant("eu"), str(platform.calls["eu"])
    env = _envelope(platform, "eu", "transcript", f"{call_id}:s1:5")
    subject = call_subject("us", eu_tenant, call_id, "transcript")

    async def plant() -> int:
        async with connect(platform.nats.url("us")) as nc:
            ack = await publish_event(nc.jetstream(), subject, env.to_bytes(), msg_id=env.event_id)
            return ack.seq

    async def remove(seq: int) -> None:
        async with connect(platform.nats.url("us")) as nc:
            assert await nc.jetstream().delete_msg(call_stream_name("us"), seq)

    seq = platform.db.run(plant())
    try:
        assert audit_main(platform.cli_args()) == 1
        report = platform.audit()
        [violation] = report.violations
        assert violation.check == "nats.event" and violation.tenant == eu_tenant
        assert violation.expected == "eu" and violation.region == "us"
        assert violation.where == f"stream CALLS_US seq {seq}: {subject}"
        assert "stream CALLS_US" in violation.found and "envelope region eu" in violation.found
        assert "tenant homed in eu" in violation.found
        assert report.regions["us"].violations == 1 and report.regions["eu"].violations == 0
    finally:
        platform.db.run(remove(seq))
    assert platform.audit().clean


def test_recording_of_an_in_tenant_in_the_eu_store_is_reported(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    key = platform.recordings["in"]
    in_store, eu_store = platform.store("in"), platform.store("eu")
    data = in_store.get(key)
    eu_store.put(key, data)
    in_store.delete(key)
    try:
        assert audit_main(platform.cli_args()) == 1
        printed = capsys.readouterr().out
        assert "Residency audit (postgresql): 2 VIOLATION(S)" in printed and key in printed
        report = platform.audit()
        [obj] = _only(report, "store.object")
        assert obj.tenant == platform.tenant("in") and obj.expected == "in"
        assert obj.found == "store autospeak-eu" and obj.region == "eu" and key in obj.where
        [row] = _only(report, "db.recording")
        assert row.expected == "in" and row.found == "missing from autospeak-in; present in autospeak-eu"
        assert len(report.violations) == 2
    finally:
        in_store.put(key, data)
        eu_store.delete(key)
    assert platform.audit().clean


def test_the_foreign_key_refuses_a_wrong_region_and_the_audit_finds_one_written_around_it(
    platform: Platform,
) -> None:
    eu = platform.scopes["eu"]
    values = {"tid": eu.tenant_id, "id": uuid.uuid4()}
    insert = text("INSERT INTO consents (id, region, tenant_id, subject_e164, kind, granted, source) "
                  "VALUES (:id, 'us', :tid, '+15555550100', 'recording', true, 'planted')")

    async def refused() -> None:
        async with platform.db.engine.begin() as conn:
            await conn.execute(insert, values)

    with pytest.raises(IntegrityError, match="fk_consents_tenant_home"):
        platform.db.run(refused())

    async def plant() -> None:
        # Foreign keys are triggers; a replication session (restores, logical replication) skips them.
        async with platform.db.engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(insert, values)

    async def remove() -> None:
        async with platform.db.engine.begin() as conn:
            await conn.execute(text("DELETE FROM consents WHERE id = :id"), {"id": values["id"]})

    platform.db.run(plant())
    try:
        assert audit_main(platform.cli_args()) == 1
        report = platform.audit()
        [violation] = report.violations
        assert violation.check == "db.region" and violation.tenant == str(eu.tenant_id)
        assert violation.where == f"consents {values['id']}"
        assert violation.expected == "eu" and violation.found == "region us" and violation.region == "us"
    finally:
        platform.db.run(remove())
    assert platform.audit().clean


def test_a_row_outside_its_regions_partition_is_reported(platform: Platform) -> None:
    """PostgreSQL routes and checks every row against its partition's bounds, so a row can only rest
    outside `<table>_<region>` when the layout is changed: here the us partition is detached for
    "maintenance" and a DEFAULT partition catches the us tenant's next row."""
    us = platform.scopes["us"]
    row_id = uuid.uuid4()

    async def plant() -> None:
        async with platform.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE audit_log DETACH PARTITION audit_log_us"))
            await conn.execute(text("CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT"))

        async def write(session: AsyncSession) -> None:
            session.add(us.new(AuditLog, id=row_id, actor="ops", action="login", target_type="user",
                               details={}))

        await run_transaction(platform.db.sessions, write, scope=us)

    async def restore() -> None:
        async with platform.db.engine.begin() as conn:
            # Dropped with its row: the audit log refuses DELETE (migration 0003's trigger).
            await conn.execute(text("DROP TABLE audit_log_default"))
            await conn.execute(
                text("ALTER TABLE audit_log ATTACH PARTITION audit_log_us FOR VALUES IN ('us')"))

    platform.db.run(plant())
    try:
        assert audit_main(platform.cli_args()) == 1
        report = platform.audit()
        [row] = _only(report, "db.partition")
        assert row.where == f"audit_log {row_id}" and row.tenant == str(us.tenant_id)
        assert row.expected == "us (partition audit_log_us)" and row.found == "partition audit_log_default"
        layout = {v.found for v in _only(report, "db.partitions")}
        assert layout == {"audit_log_us: missing", "extra partition audit_log_default DEFAULT"}
        assert {v.check for v in report.violations} == {"db.partition", "db.partitions"}
    finally:
        platform.db.run(restore())
    assert platform.audit().clean


def test_call_state_of_another_regions_tenant_is_reported(platform: Platform) -> None:
    eu = platform.scopes["eu"]
    state = {"call_id": "c-planted", "tenant_id": str(eu.tenant_id), "region": "eu", "status": "active"}

    async def put(value: bytes | None) -> None:
        async with connect(platform.nats.url("us")) as nc:
            kv = await nc.jetstream().key_value("call_state_us")
            if value is None:
                await kv.purge("c-planted")
            else:
                await kv.put("c-planted", value)

    platform.db.run(put(json.dumps(state).encode()))
    try:
        report = platform.audit()
        [violation] = report.violations
        assert violation.check == "nats.call_state" and violation.tenant == str(eu.tenant_id)
        assert violation.expected == "eu" and violation.region == "us"
    finally:
        platform.db.run(put(None))
    assert platform.audit().clean


def test_a_stream_placed_outside_its_region_is_reported(platform: Platform) -> None:
    """Last, since it recreates the in region's call-state bucket (its entries are not restored)."""
    name = "KV_call_state_in"

    async def misplace() -> None:
        async with connect(platform.nats.url("in")) as nc:
            js = nc.jetstream()
            config = (await js.stream_info(name)).config
            await js.delete_stream(name)
            config.placement = Placement(cluster="us")
            await js.add_stream(config)

    async def restore() -> None:
        async with connect(platform.nats.url("in")) as nc:
            js = nc.jetstream()
            await js.delete_stream(name)
            await ensure_call_state_bucket(js, "in")

    platform.db.run(misplace())
    try:
        assert audit_main(platform.cli_args()) == 1
        [violation] = platform.audit().violations
        assert violation.check == "nats.placement" and violation.where == f"stream {name}"
        assert violation.found == "placement cluster=us tags=[], running on cluster us"
    finally:
        platform.db.run(restore())
    assert platform.audit().clean


# --- usage and connection errors ----------------------------------------------------------------


def test_usage_and_connection_errors_exit_2(platform: Platform, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    base = ["residency", "--database-url", platform.db.url, "--object-store", str(platform.store_root)]
    for bad in ("eu=nats://127.0.0.1:1", "mars=nats://x:1,eu=a,in=b,us=c", "eu=a,eu=b,in=c,us=d", "a,b"):
        with pytest.raises(SystemExit) as exit_info:
            audit_main([*base, "--nats-url", bad])
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        audit_main([*platform.cli_args()[:-1], str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    # A NATS server nobody listens on (a single URL serves every region).
    assert audit_main([*base, "--nats-url", "nats://127.0.0.1:1"]) == 2
    assert "cannot connect to NATS of region eu" in capsys.readouterr().err
    # A database that is not there: the password must not be printed.
    unreachable = "postgresql://audit:s3cret@127.0.0.1:1/autospeak"
    assert audit_main(["residency", "--database-url", unreachable, "--nats-url", platform.nats_arg,
                       "--object-store", str(platform.store_root)]) == 2
    err = capsys.readouterr().err
    assert "database audit failed" in err and "s3cret" not in err


def test_migrations_cli_reports_errors_with_exit_codes() -> None:
    refused = _cli("control.db", "upgrade", "--database-url", "postgresql://u:s3cret@127.0.0.1:1/autospeak")
    assert refused.returncode == 1 and "s3cret" not in refused.stderr
    assert "upgrade failed on postgresql://u:***@127.0.0.1:1/autospeak" in refused.stderr
    unsupported = _cli("control.db", "upgrade", "--database-url", "mysql://x@y/z")
    assert unsupported.returncode == 2 and "unsupported database 'mysql'" in unsupported.stderr
    rendered = _cli("control.db", "render", "--dialect", "cockroachdb")
    assert rendered.returncode == 0 and "SET LOCALITY REGIONAL BY ROW" in rendered.stdout
    rendered_pg = _cli("control.db", "render", "--dialect", "postgresql")
    assert rendered_pg.returncode == 0 and "PARTITION OF" in rendered_pg.stdout


# --- query text (CockroachDB cannot run here) ---------------------------------------------------


def test_cockroach_region_query_compares_crdb_region_with_the_topology(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sql = str(crdb_region_query(Call, limit=50).compile(dialect=CockroachDBDialect_asyncpg(),
                                                       compile_kwargs={"literal_binds": True}))
    flat = " ".join(sql.split())
    assert flat == (
        'SELECT calls.id, calls.tenant_id, calls.region, CAST("calls".crdb_region AS VARCHAR) AS crdb_region '
        'FROM calls WHERE CAST("calls".crdb_region AS VARCHAR) IS DISTINCT FROM CASE calls.region '
        "WHEN 'eu' THEN 'europe-west1' WHEN 'in' THEN 'asia-south1' WHEN 'us' THEN 'us-east1' END LIMIT 50"
    )
    monkeypatch.setenv("AUTOSPEAK_CRDB_REGIONS", "eu=eu,in=in,us=us")
    local = " ".join(str(crdb_region_query(Call).compile(
        dialect=CockroachDBDialect_asyncpg(), compile_kwargs={"literal_binds": True})).split())
    assert "CASE calls.region WHEN 'eu' THEN 'eu' WHEN 'in' THEN 'in' WHEN 'us' THEN 'us' END" in local
    assert str(CRDB_LOCALITIES) == ("SELECT table_name, locality FROM [SHOW TABLES] "
                                    "WHERE schema_name = current_schema()")
    # Marked as a deliberate cross-tenant read, so the tenant guard lets it through.
    assert crdb_region_query(Call).get_execution_options()["autospeak_unscoped"] == "residency audit"


def test_postgres_partition_query_reads_the_physical_partition() -> None:
    sql = " ".join(str(pg_partition_query(Turn, limit=7).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})).split())
    assert sql == ('SELECT turns.id, turns.tenant_id, turns.region, pg_class.relname FROM turns '
                   'JOIN pg_class ON pg_class.oid = "turns".tableoid '
                   "WHERE pg_class.relname != ('turns_' || turns.region) LIMIT 7")
