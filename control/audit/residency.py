"""The residency audit: is every piece of a tenant's data resting in the tenant's home region?

Three stores are read, independently of the code paths that wrote them, so a bug in one writer (or a
hand-made change by an operator) shows up here:

- database: every row of every regional table has `region` = its tenant's home region; on PostgreSQL
  the row physically sits in that region's partition (`<table>_<region>`, see
  control/db/migrations/regional_ddl.py) and the partitions are laid out as the migration made them;
  on CockroachDB the table is REGIONAL BY ROW and the row's `crdb_region` (its home) is the region's
  database region (control.db.topology.crdb_regions). Every recording row points at an object that
  exists in its own region's store.
- NATS: every message of stream CALLS_<REGION> has a `<region>.` subject, an envelope whose region is
  the stream's and a tenant homed there; the stream, and the live call-state bucket's stream, are
  placed on the region's cluster. Messages are read by an ephemeral ordered consumer, so durable
  consumers (the control plane's event consumer) are not touched.
- object store: every key in a region's store belongs to a tenant homed in that region, and to the
  same tenant as any recording row that references it.

The audit only reads. Cross-tenant queries are marked `unscoped(stmt, "residency audit")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StreamInfo
from nats.js.errors import NotFoundError
from sqlalchemy import Select, String, case, cast, column, func, literal, literal_column, select, table, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from cells.contract.envelope import CallEventEnvelope, EnvelopeError
from cells.contract.jetstream import call_state_bucket_name, call_stream_name
from control.db import models  # noqa: F401  (registers every table with the mapper registry)
from control.db.base import Regional, regional_models
from control.db.call_models import Recording
from control.db.models import Tenant
from control.db.session import create_engine, session_factory
from control.db.tenancy import unscoped
from control.db.topology import REGIONS, crdb_regions
from regions.catalogue import get_region
from regions.objectstore import ObjectKeyError, RegionStore

REASON: Final = "residency audit"
# Violating rows listed per (table, check); the count of rows checked is always complete.
DEFAULT_ROW_LIMIT: Final = 1000
_READ_TIMEOUT: Final = 10.0
_CONNECT_TIMEOUT: Final = 10.0

__all__ = [
    "AuditError",
    "AuditReport",
    "RegionSummary",
    "Violation",
    "audit_residency",
    "crdb_region_query",
    "pg_partition_query",
    "region_mismatch_query",
]


class AuditError(RuntimeError):
    """The audit could not run to the end (a store unreachable, a schema missing): no verdict."""


@dataclass(frozen=True, slots=True)
class Violation:
    check: str  # db.region/partition/partitions/crdb_region/locality/recording, nats.*, store.object
    where: str  # table and row id, stream and sequence, or store and key
    tenant: str  # tenant id, or "-" for a finding about a whole table or stream
    expected: str  # the region the data belongs in
    found: str  # where it was found instead, and why that is wrong
    region: str = "-"  # the region whose partition, stream or store was being read


@dataclass
class RegionSummary:
    region: str
    tenants: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows checked in this region
    events: int = 0
    call_states: int = 0
    objects: int = 0
    violations: int = 0

    @property
    def rows_total(self) -> int:
        return sum(self.rows.values())


@dataclass
class AuditReport:
    dialect: str
    regions: dict[str, RegionSummary]
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.violations

    def add(self, violation: Violation) -> None:
        self.violations.append(violation)
        if violation.region in self.regions:
            self.regions[violation.region].violations += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "dialect": self.dialect,
            "regions": {
                code: {**asdict(s), "rows_total": s.rows_total} for code, s in self.regions.items()
            },
            "violations": [asdict(v) for v in self.violations],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def format(self) -> str:
        lines: list[str] = []
        verdict = "CLEAN" if self.clean else f"{len(self.violations)} VIOLATION(S)"
        lines.append(f"Residency audit ({self.dialect}): {verdict}")
        lines.append("")
        head = ("region", "tenants", "rows", "events", "call states", "objects", "violations")
        body = [
            (s.region, s.tenants, s.rows_total, s.events, s.call_states, s.objects, s.violations)
            for s in self.regions.values()
        ]
        lines += _table(head, body)
        tables = sorted({t for s in self.regions.values() for t in s.rows})
        if tables:
            lines.append("")
            lines.append("rows checked per table:")
            per_table = [(t, *(s.rows.get(t, 0) for s in self.regions.values())) for t in tables]
            lines += _table(("table", *self.regions), per_table)
        if self.violations:
            lines.append("")
            lines.append("violations:")
            lines += _table(
                ("check", "where", "tenant", "expected", "found"),
                [(v.check, v.where, v.tenant, v.expected, v.found) for v in self.violations],
            )
        if self.notes:
            lines.append("")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _table(head: tuple[Any, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    cells = [tuple(str(c) for c in head), *(tuple(str(c) for c in r) for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*cells[0]).rstrip(), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r).rstrip() for r in cells[1:]]
    return out


# --- queries ----------------------------------------------------------------------------------
# Built as statements (not run) so that their SQL can be read and tested without a server.


def _name(model: type[Regional]) -> str:
    return str(model.__tablename__)  # type: ignore[attr-defined]


def region_mismatch_query(model: type[Regional], limit: int = DEFAULT_ROW_LIMIT) -> Select[Any]:
    """Rows whose `region` is not their tenant's home region (or whose tenant is not in the directory).

    The (tenant_id, region) foreign key makes this impossible through normal writes; it finds rows
    written with the foreign key checks off (replication, restores, session_replication_role).
    """
    stmt = (
        select(model.id, model.tenant_id, model.region, Tenant.home_region)
        .select_from(model)
        .outerjoin(Tenant, Tenant.id == model.tenant_id)
        .where(Tenant.home_region.is_distinct_from(model.region))
        .limit(limit)
    )
    return unscoped(stmt, REASON)


def pg_partition_query(model: type[Regional], limit: int = DEFAULT_ROW_LIMIT) -> Select[Any]:
    """PostgreSQL: rows not stored in the partition named after their region (`<table>_<region>`)."""
    name = _name(model)
    pg_class = table("pg_class", column("oid"), column("relname"))
    tableoid = literal_column(f'"{name}".tableoid')
    stmt = (
        select(model.id, model.tenant_id, model.region, pg_class.c.relname)
        .select_from(model)
        .join(pg_class, pg_class.c.oid == tableoid)
        .where(pg_class.c.relname != literal(f"{name}_").op("||")(model.region))
        .limit(limit)
    )
    return unscoped(stmt, REASON)


def crdb_region_query(model: type[Regional], limit: int = DEFAULT_ROW_LIMIT) -> Select[Any]:
    """CockroachDB: rows whose REGIONAL BY ROW home (`crdb_region`) is not their region's database region.

    `crdb_region` is computed from `region` with the mapping the migration was run with; a row is
    reported when that mapping and the current one (control.db.topology.crdb_regions) disagree, or
    when the column was altered by hand.
    """
    name = _name(model)
    home = cast(literal_column(f'"{name}".crdb_region'), String)
    expected = case(dict(crdb_regions()), value=model.region)  # no ELSE: an unknown region is NULL
    stmt = (
        select(model.id, model.tenant_id, model.region, home.label("crdb_region"))
        .select_from(model)
        .where(home.is_distinct_from(expected))
        .limit(limit)
    )
    return unscoped(stmt, REASON)


def _row_counts_query(model: type[Regional]) -> Select[Any]:
    return unscoped(select(model.region, func.count()).select_from(model).group_by(model.region), REASON)


# CockroachDB's table localities (SHOW TABLES reports them); a regional table that is not REGIONAL BY
# ROW would keep every row in the primary region, whatever its crdb_region says.
CRDB_LOCALITIES: Final = text(
    "SELECT table_name, locality FROM [SHOW TABLES] WHERE schema_name = current_schema()"
)

_PG_PARTITIONS: Final = text(
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits AS i "
    "JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:parent AS regclass) "
    "ORDER BY c.relname"
)


# --- the audit --------------------------------------------------------------------------------


async def audit_residency(
    database_url: str,
    nats_urls: Mapping[str, str],
    object_store: Path | str,
    *,
    row_limit: int = DEFAULT_ROW_LIMIT,
) -> AuditReport:
    """Audit every region and return the report; raises AuditError when a store cannot be read."""
    missing = [r for r in REGIONS if r not in nats_urls]
    if missing:
        raise AuditError(f"no NATS URL for region(s) {', '.join(missing)}")
    root = Path(object_store)
    if not root.is_dir():
        raise AuditError(f"object store {root} is not a directory")
    stores = {r: RegionStore(root, r) for r in REGIONS}

    engine = create_engine(database_url, pool_pre_ping=False)
    try:
        report = AuditReport(engine.dialect.name, {r: RegionSummary(r) for r in REGIONS})
        try:
            async with session_factory(engine)() as session:
                homes = await _tenant_homes(session)
                for home in homes.values():
                    if home in report.regions:
                        report.regions[home].tenants += 1
                await _audit_tables(session, report, homes, row_limit)
                recordings = await _audit_recordings(session, report, stores)
        except (SQLAlchemyError, OSError) as exc:
            raise AuditError(f"database audit failed: {_describe(exc)}") from exc
    finally:
        await engine.dispose()

    for region in REGIONS:
        await _audit_nats_region(region, nats_urls[region], report, homes)
    _audit_store(report, stores, homes, recordings)
    return report


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # DBAPIError: the driver's message, without the SQL text
    err = orig if orig is not None else exc
    return f"{type(err).__name__}: {err}".strip()


async def _tenant_homes(session: AsyncSession) -> dict[uuid.UUID, str]:
    # The tenant directory is global (not regional), so no tenant scope applies to it.
    rows = await session.execute(select(Tenant.id, Tenant.home_region))
    return {tid: home for tid, home in rows.all()}


async def _audit_tables(
    session: AsyncSession, report: AuditReport, homes: Mapping[uuid.UUID, str], limit: int
) -> None:
    localities: dict[str, str | None] = {}
    if report.dialect == "cockroachdb":
        localities = {t: loc for t, loc in (await session.execute(CRDB_LOCALITIES)).all()}
    for model in regional_models():
        name = _name(model)
        for region, count in (await session.execute(_row_counts_query(model))).all():
            summary = report.regions.get(region)
            if summary is not None:
                summary.rows[name] = int(count)
            else:  # a region the catalogue does not know: every such row is misplaced
                report.add(Violation("db.region", name, "-", "a known region",
                                     f"{count} row(s) with region {region!r}"))
        for summary in report.regions.values():
            summary.rows.setdefault(name, 0)

        rows = (await session.execute(region_mismatch_query(model, limit))).all()
        for row_id, tenant, region, home in rows:
            found = f"region {region}" + ("" if home else " (tenant not in the directory)")
            report.add(Violation("db.region", f"{name} {row_id}", str(tenant), home or "?", found, region))
        _note_limit(report, name, "db.region", len(rows), limit)

        if report.dialect == "postgresql":
            await _audit_pg_layout(session, report, name)
            rows = (await session.execute(pg_partition_query(model, limit))).all()
            for row_id, tenant, region, partition in rows:
                report.add(Violation("db.partition", f"{name} {row_id}", str(tenant),
                                     f"{region} (partition {name}_{region})", f"partition {partition}",
                                     region))
            _note_limit(report, name, "db.partition", len(rows), limit)
        elif report.dialect == "cockroachdb":
            locality = localities.get(name)
            if not (locality or "").startswith("REGIONAL BY ROW"):
                report.add(Violation("db.locality", name, "-", "REGIONAL BY ROW AS crdb_region",
                                     f"locality {locality or 'unknown'}"))
            expected = crdb_regions()
            rows = (await session.execute(crdb_region_query(model, limit))).all()
            for row_id, tenant, region, crdb_region in rows:
                report.add(Violation("db.crdb_region", f"{name} {row_id}", str(tenant),
                                     f"{region} ({expected.get(region, '?')})",
                                     f"crdb_region {crdb_region}", region))
            _note_limit(report, name, "db.crdb_region", len(rows), limit)
        else:
            report.notes.append(f"dialect {report.dialect}: physical placement of {name} not checked")


def _note_limit(report: AuditReport, table_name: str, check: str, listed: int, limit: int) -> None:
    if listed >= limit:
        report.notes.append(f"{table_name}: {check} listing stopped at {limit} rows; there may be more")


async def _audit_pg_layout(session: AsyncSession, report: AuditReport, name: str) -> None:
    """The partitions are exactly `<table>_<region>` FOR VALUES IN ('<region>'), and no DEFAULT.

    A DEFAULT partition, or a region's partition detached, would let rows rest under the wrong name.
    """
    found = {rel: bound for rel, bound in (await session.execute(_PG_PARTITIONS, {"parent": name})).all()}
    expected = {f"{name}_{r}": f"FOR VALUES IN ('{r}')" for r in REGIONS}
    for rel, bound in expected.items():
        if found.get(rel) != bound:
            report.add(Violation("db.partitions", name, "-", f"partition {rel} {bound}",
                                 f"{rel}: {found.get(rel) or 'missing'}", rel.rsplit("_", 1)[1]))
    for rel in sorted(set(found) - set(expected)):
        report.add(Violation("db.partitions", name, "-", "one partition per region, no other",
                             f"extra partition {rel} {found[rel]}"))


async def _audit_recordings(
    session: AsyncSession, report: AuditReport, stores: Mapping[str, RegionStore]
) -> dict[str, list[tuple[str, str]]]:
    """Each recording row's object exists in its region's store, under its tenant's prefix.

    Returns object key -> [(tenant, region)] of the rows that reference it, for the store check.
    """
    refs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    stmt = unscoped(select(Recording.id, Recording.tenant_id, Recording.region, Recording.object_key), REASON)
    for row_id, tenant_id, region, key in (await session.execute(stmt)).all():
        tenant = str(tenant_id)
        refs[key].append((tenant, region))
        where = f"recordings {row_id} -> {key}"
        store = stores.get(region)
        if store is None:
            continue  # already reported as a row with an unknown region
        if key.partition("/")[0] != tenant:
            report.add(Violation("db.recording", where, tenant, region,
                                 "object key is under another tenant's prefix", region))
            continue
        try:
            present = store.exists(key)
        except ObjectKeyError:
            report.add(Violation("db.recording", where, tenant, region, "malformed object key", region))
            continue
        if not present:
            elsewhere = [r for r, s in stores.items() if r != region and s.exists(key)]
            found = (f"missing from {store.region.bucket}; present in "
                     + ", ".join(stores[r].region.bucket for r in elsewhere)) if elsewhere \
                else f"missing from {store.region.bucket} (and every other store)"
            report.add(Violation("db.recording", where, tenant, region, found, region))
    return refs


def _audit_store(
    report: AuditReport,
    stores: Mapping[str, RegionStore],
    homes: Mapping[uuid.UUID, str],
    refs: Mapping[str, list[tuple[str, str]]],
) -> None:
    for region, store in stores.items():
        bucket = store.region.bucket
        if not store.root.is_dir():
            report.notes.append(f"store {bucket} does not exist (no objects to check)")
            continue
        for path in sorted(p for p in store.root.rglob("*") if p.is_file()):
            if path.name.startswith("."):
                continue  # a RegionStore.put in progress (temp file, renamed when complete)
            key = path.relative_to(store.root).as_posix()
            report.regions[region].objects += 1
            where = f"store {bucket}: {key}"
            try:
                store.path(key)
                tenant_id = uuid.UUID(key.partition("/")[0])
            except (ObjectKeyError, ValueError):
                report.add(Violation("store.object", where, "?", region,
                                     "not a <tenant>/<name> key: owner unknown", region))
                continue
            tenant = str(tenant_id)
            home = homes.get(tenant_id)
            if home != region:
                found = f"store {bucket}" + ("" if home else " (tenant not in the directory)")
                report.add(Violation("store.object", where, tenant, home or "?", found, region))
            for ref_tenant, ref_region in refs.get(key, ()):
                if ref_tenant != tenant:
                    report.add(Violation("store.object", where, tenant, home or "?",
                                         f"referenced by a recording of tenant {ref_tenant} ({ref_region})",
                                         region))


# --- NATS -------------------------------------------------------------------------------------


async def _connect(url: str, region: str) -> Client:
    async def quiet(_exc: Exception) -> None:  # failures are raised from connect() instead
        return None

    try:
        # nats-py retries the initial connect up to max_reconnect_attempts times per server (0 means
        # forever), whatever allow_reconnect says; bound both the attempts and the total time.
        connecting = nats.connect(url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=1,
                                  reconnect_time_wait=0.2, error_cb=quiet)
        return await asyncio.wait_for(connecting, _CONNECT_TIMEOUT)
    except (TimeoutError, OSError, NatsError) as exc:
        raise AuditError(f"cannot connect to NATS of region {region}: {type(exc).__name__}: {exc}") from exc


async def _audit_nats_region(
    region: str, url: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    nc = await _connect(url, region)
    try:
        js = nc.jetstream()
        await _audit_call_stream(js, region, report, homes)
        await _audit_call_state(js, region, report, homes)
    except (TimeoutError, NatsError) as exc:
        raise AuditError(f"NATS audit of region {region} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        await nc.close()


async def _stream_info(js: JetStreamContext, name: str, report: AuditReport, what: str) -> StreamInfo | None:
    try:
        return await js.stream_info(name)
    except NotFoundError:
        report.notes.append(f"{what} stream {name} does not exist (nothing to check)")
        return None


def _check_placement(info: StreamInfo, region: str, report: AuditReport) -> None:
    r = get_region(region)
    name = info.config.name or "?"
    wanted = info.config.placement
    placed_by_config = wanted is not None and (
        wanted.cluster == r.nats_cluster or (wanted.cluster is None and r.nats_tag in (wanted.tags or []))
    )
    actual = info.cluster.name if info.cluster is not None else None
    if not placed_by_config or actual != r.nats_cluster:
        asked = "none" if wanted is None else f"cluster={wanted.cluster} tags={wanted.tags or []}"
        report.add(Violation("nats.placement", f"stream {name}", "-", f"{region} (cluster {r.nats_cluster})",
                             f"placement {asked}, running on cluster {actual}", region))
    for subject in info.config.subjects or ():
        if subject.split(".")[0] not in (region, "$KV"):
            report.add(Violation("nats.placement", f"stream {name}", "-", f"{region}.calls.>",
                                 f"stream captures subject {subject}", region))


async def _read_all(js: JetStreamContext, info: StreamInfo, handle: Callable[[Msg], None]) -> None:
    """Hand every message of the stream to `handle`, through an ephemeral ordered consumer (no filter,
    no acks), one at a time so that a long stream is not held in memory.

    The consumer lives in memory on the stream's server and is deleted once read; durable consumers
    and their positions are left alone.
    """
    if not info.state.messages:
        return
    name = info.config.name or ""
    # The inactivity threshold reaps the consumer even if the audit dies before deleting it.
    sub = await js.subscribe("", stream=name, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL,
                             inactive_threshold=10.0)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=_READ_TIMEOUT)
            except TimeoutError:  # nats-py raises its own or asyncio's
                raise AuditError(f"stream {name}: no message for {_READ_TIMEOUT:.0f} s while reading") \
                    from None
            handle(msg)
            if msg.metadata.num_pending == 0:
                return
    finally:
        consumer = sub._consumer  # the ordered consumer's current name (it changes on a reset)
        await sub.unsubscribe()
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(name, consumer)


async def _audit_call_stream(
    js: JetStreamContext, region: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    name = call_stream_name(region)
    info = await _stream_info(js, name, report, "event")
    if info is None:
        return
    _check_placement(info, region, report)

    def check(msg: Msg) -> None:
        report.regions[region].events += 1
        _check_event(msg, name, region, report, homes)

    await _read_all(js, info, check)


def _check_event(
    msg: Msg, stream: str, region: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    parts = msg.subject.split(".")
    where = f"stream {stream} seq {msg.metadata.sequence.stream}: {msg.subject}"
    subject_tenant = parts[2] if len(parts) > 2 else "?"
    try:
        env = CallEventEnvelope.from_bytes(msg.data)
    except EnvelopeError as exc:
        home = _home(homes, subject_tenant)
        report.add(Violation("nats.event", where, subject_tenant, home or "?",
                             f"stream {stream}; unreadable envelope ({exc})", region))
        return
    home = _home(homes, env.tenant_id)
    problems = []
    if parts[0] != region:
        problems.append(f"subject region {parts[0]}")
    if env.region != region:
        problems.append(f"envelope region {env.region}")
    if home is None:
        problems.append("tenant not in the directory")
    elif home != region:
        problems.append(f"tenant homed in {home}")
    if subject_tenant != env.tenant_id:
        problems.append(f"subject tenant {subject_tenant}")
    if problems:
        report.add(Violation("nats.event", where, env.tenant_id, home or env.region,
                             f"stream {stream} ({'; '.join(problems)})", region))


def _home(homes: Mapping[uuid.UUID, str], tenant: str) -> str | None:
    try:
        return homes.get(uuid.UUID(str(tenant)))
    except ValueError:
        return None


async def _audit_call_state(
    js: JetStreamContext, region: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    bucket = call_state_bucket_name(region)
    name = f"KV_{bucket}"
    info = await _stream_info(js, name, report, "call-state")
    if info is None:
        return
    _check_placement(info, region, report)
    await _read_all(js, info, lambda msg: _check_call_state(msg, bucket, region, report, homes))


def _check_call_state(
    msg: Msg, bucket: str, region: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
        return  # a tombstone carries no state
    report.regions[region].call_states += 1
    key = msg.subject.removeprefix(f"$KV.{bucket}.")
    where = f"bucket {bucket} key {key} rev {msg.metadata.sequence.stream}"
    try:
        state = json.loads(msg.data)
        tenant, state_region = str(state["tenant_id"]), str(state["region"])
    except (ValueError, KeyError, TypeError):
        report.add(Violation("nats.call_state", where, "?", region,
                             "unreadable call state: owner unknown", region))
        return
    home = _home(homes, tenant)
    if state_region != region or home != region:
        found = f"bucket {bucket} (state region {state_region}; tenant homed in {home or 'nowhere'})"
        report.add(Violation("nats.call_state", where, tenant, home or state_region, found, region))
