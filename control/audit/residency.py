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

import uuid
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Select, String, case, cast, column, func, literal, literal_column, select, table, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from control.audit.residency_nats import audit_nats_region
from control.audit.residency_report import AuditError, AuditReport, RegionSummary, Violation
from control.db import models  # noqa: F401  (registers every table with the mapper registry)
from control.db.base import Regional, regional_models
from control.db.call_models import Recording
from control.db.models import Tenant
from control.db.session import create_engine, session_factory
from control.db.tenancy import unscoped
from control.db.topology import REGIONS, crdb_regions
from regions.objectstore import ObjectKeyError, RegionStore

REASON: Final = "residency audit"
# Violating rows listed per (table, check); the count of rows checked is always complete.
DEFAULT_ROW_LIMIT: Final = 1000

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
        await audit_nats_region(region, nats_urls[region], report, homes)
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


