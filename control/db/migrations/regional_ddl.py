"""Dialect-specific DDL shared by revisions: how a table is made regional or global.

PostgreSQL (embedded default): a regional table is LIST-partitioned by `region`, one partition per
region and deliberately no DEFAULT partition, so a row for an unknown region has nowhere to go.

CockroachDB (production): the database gets its regions, survival goal and super regions; a regional
table gets a stored `crdb_region` column computed from `region` (the tenant's home region, so rows are
homed by tenant, never by the gateway node that wrote them) and `LOCALITY REGIONAL BY ROW AS` it;
directory tables are `LOCALITY GLOBAL`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import UserDefinedType

from control.db.topology import REGIONS, crdb_primary_region, crdb_regions, crdb_super_regions

CRDB_REGION_COLUMN = "crdb_region"
POSTGRESQL = "postgresql"
COCKROACHDB = "cockroachdb"


class CrdbRegion(UserDefinedType[str]):
    """The enum CockroachDB creates once a database has regions."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "crdb_internal_region"


def dialect() -> str:
    name = op.get_context().dialect.name
    if name not in (POSTGRESQL, COCKROACHDB):
        raise RuntimeError(f"unsupported dialect for the AutoSpeak schema: {name}")
    return name


def _q(identifier: str) -> str:
    return op.get_context().dialect.identifier_preparer.quote_identifier(identifier)


def _database_name() -> str:
    ctx = op.get_context()
    if ctx.as_sql:  # offline rendering: env.py passes the target database's name
        return str(ctx.opts["autospeak_database"])
    return str(op.get_bind().execute(sa.text("SELECT current_database()")).scalar_one())


def prepare_database() -> None:
    if dialect() == POSTGRESQL:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return
    db = _q(_database_name())
    primary = crdb_primary_region()
    op.execute(f"ALTER DATABASE {db} SET PRIMARY REGION {_q(primary)}")
    for crdb in crdb_regions().values():
        if crdb != primary:
            op.execute(f"ALTER DATABASE {db} ADD REGION IF NOT EXISTS {_q(crdb)}")
    op.execute(f"ALTER DATABASE {db} SURVIVE ZONE FAILURE")
    op.execute("SET enable_super_regions = 'on'")
    for name, members in crdb_super_regions().items():
        values = ", ".join(_q(m) for m in members)
        op.execute(f"ALTER DATABASE {db} ADD SUPER REGION {_q(name)} VALUES {values}")


def unprepare_database() -> None:
    if dialect() == POSTGRESQL:
        op.execute("DROP EXTENSION IF EXISTS vector")
        return
    # Regions stay: dropping them would fail while other databases' objects use the region enum, and
    # they carry no data once the tables are gone.
    db = _q(_database_name())
    op.execute("SET enable_super_regions = 'on'")
    for name in crdb_super_regions():
        op.execute(f"ALTER DATABASE {db} DROP SUPER REGION {_q(name)}")


def _region_case() -> str:
    whens = " ".join(f"WHEN '{app}' THEN '{crdb}'" for app, crdb in crdb_regions().items())
    # No ELSE: an unknown region yields NULL, which the NOT NULL column rejects.
    return f"CASE region {whens} END"


def create_regional_table(name: str, *elements: Any) -> None:
    """Create a tenant-data table: id, region (tenant's home), tenant_id, then `elements`."""
    base: list[Any] = [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        *elements,
        sa.PrimaryKeyConstraint("id", "region", name=f"pk_{name}"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "region"], ["tenants.id", "tenants.home_region"], name=f"fk_{name}_tenant_home"
        ),
    ]
    if dialect() == POSTGRESQL:
        op.create_table(name, *base, postgresql_partition_by="LIST (region)")
        for region in REGIONS:
            partition = _q(f"{name}_{region}")
            op.execute(f"CREATE TABLE {partition} PARTITION OF {_q(name)} FOR VALUES IN ('{region}')")
        return
    computed = sa.Column(
        CRDB_REGION_COLUMN, CrdbRegion(), sa.Computed(_region_case(), persisted=True), nullable=False
    )
    op.create_table(name, *base, computed)
    op.execute(f"ALTER TABLE {_q(name)} SET LOCALITY REGIONAL BY ROW AS {_q(CRDB_REGION_COLUMN)}")


def create_global_table(name: str, *elements: Any) -> None:
    op.create_table(name, *elements)
    if dialect() == COCKROACHDB:
        op.execute(f"ALTER TABLE {_q(name)} SET LOCALITY GLOBAL")


def drop_table(name: str) -> None:
    # On PostgreSQL dropping the parent drops its partitions.
    op.drop_table(name)
