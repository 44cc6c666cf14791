"""The CockroachDB multi-region DDL, rendered offline from the same Alembic migration.

CockroachDB cannot run here, so these tests read the SQL that the migration would execute on it.
"""

from __future__ import annotations

import re

import pytest

from control.db import models  # noqa: F401  (registers every table)
from control.db.base import global_models, regional_models
from control.db.cockroach_ddl import render_cockroach_ddl, statements
from control.db.topology import REGIONS, crdb_primary_region, crdb_regions, crdb_super_regions

REGIONAL = sorted(m.__tablename__ for m in regional_models())  # type: ignore[attr-defined]
GLOBAL = sorted(m.__tablename__ for m in global_models())  # type: ignore[attr-defined]
CREATE = re.compile(r"^CREATE TABLE (\w+) \(", re.M)
LOCALITY = re.compile(r'^ALTER TABLE "(\w+)" SET LOCALITY (.+)$')


@pytest.fixture(scope="module")
def ddl() -> str:
    return render_cockroach_ddl("autospeak")


@pytest.fixture(scope="module")
def stmts(ddl: str) -> list[str]:
    return statements(ddl)


def _localities(stmts: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in stmts:
        if m := LOCALITY.match(s):
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def _create(stmts: list[str], table: str) -> str:
    [body] = [s for s in stmts if s.startswith(f"CREATE TABLE {table} (")]
    return body


def test_database_regions_survival_and_super_regions(stmts: list[str]) -> None:
    db = '"autospeak"'
    primary = crdb_primary_region()
    assert f'ALTER DATABASE {db} SET PRIMARY REGION "{primary}"' in stmts
    for crdb in crdb_regions().values():
        if crdb != primary:
            assert f'ALTER DATABASE {db} ADD REGION IF NOT EXISTS "{crdb}"' in stmts
    assert set(crdb_regions()) == set(REGIONS)
    assert f"ALTER DATABASE {db} SURVIVE ZONE FAILURE" in stmts

    supers = [s for s in stmts if "ADD SUPER REGION" in s]
    assert len(supers) == len(crdb_super_regions())
    for name, members in crdb_super_regions().items():
        values = ", ".join(f'"{m}"' for m in members)
        assert f'ALTER DATABASE {db} ADD SUPER REGION "{name}" VALUES {values}' in supers
    # Super regions are behind a session setting, which must come first.
    assert stmts.index("SET enable_super_regions = 'on'") < stmts.index(supers[0])
    # The database is multi-region before any table is created in it.
    first_app_table = min(i for i, s in enumerate(stmts) if CREATE.match(s) and "alembic_version" not in s)
    last_db_change = max(i for i, s in enumerate(stmts) if s.startswith("ALTER DATABASE"))
    assert last_db_change < first_app_table


def test_every_regional_table_is_regional_by_row_on_the_tenants_home_region(stmts: list[str]) -> None:
    localities = _localities(stmts)
    expected_case = {app: crdb for app, crdb in crdb_regions().items()}
    for table in REGIONAL:
        assert localities.get(table) == ['REGIONAL BY ROW AS "crdb_region"'], table
        body = _create(stmts, table)
        [column] = [line.strip() for line in body.splitlines() if line.strip().startswith("crdb_region ")]
        assert column.startswith("crdb_region crdb_internal_region AS (CASE region ")
        assert column.endswith("END) STORED NOT NULL,")
        mapping = dict(re.findall(r"WHEN '(\w+)' THEN '([\w-]+)'", column))
        assert mapping == expected_case, table
        assert "ELSE" not in column  # an unknown region must fail, not fall into a default region
        # `region` is pinned to the tenant's home region by the directory, so the row's home follows
        # the tenant, never the gateway node that inserted it.
        assert f"CONSTRAINT fk_{table}_tenant_home FOREIGN KEY(tenant_id, region) " \
               "REFERENCES tenants (id, home_region)" in body
        assert "PRIMARY KEY (id, region)" in body
        assert "PARTITION BY" not in body


def test_directory_tables_are_global(stmts: list[str]) -> None:
    localities = _localities(stmts)
    for table in GLOBAL:
        assert localities.get(table) == ["GLOBAL"], table
        assert "crdb_region" not in _create(stmts, table)


def test_no_table_is_left_without_a_locality(stmts: list[str], ddl: str) -> None:
    created = set(CREATE.findall(ddl)) - {"alembic_version"}
    assert created == set(REGIONAL) | set(GLOBAL)
    localities = _localities(stmts)
    assert set(localities) == created
    assert all(len(v) == 1 for v in localities.values())
    # Nothing homes rows by the node that happens to serve the insert.
    assert "gateway_region" not in ddl
    assert "CREATE EXTENSION" not in ddl  # CockroachDB has VECTOR built in


def test_region_names_follow_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSPEAK_CRDB_REGIONS", "eu=eu,in=in,us=us")
    monkeypatch.setenv("AUTOSPEAK_CRDB_PRIMARY", "us")
    stmts = statements(render_cockroach_ddl("voice"))
    assert 'ALTER DATABASE "voice" SET PRIMARY REGION "us"' in stmts
    assert 'ALTER DATABASE "voice" ADD REGION IF NOT EXISTS "eu"' in stmts
    assert 'ALTER DATABASE "voice" ADD SUPER REGION "in" VALUES "in"' in stmts
    calls = _create(stmts, "calls")
    assert "CASE region WHEN 'eu' THEN 'eu' WHEN 'in' THEN 'in' WHEN 'us' THEN 'us' END" in calls


def test_downgrade_renders_too() -> None:
    from control.db.migrate import render_sql

    sql = render_sql("cockroachdb:///autospeak", "base", downgrade_from="0005")
    for table in REGIONAL + GLOBAL:
        assert f"DROP TABLE {table};" in sql
    assert "DROP SUPER REGION" in sql


def test_audit_log_is_append_only_on_cockroachdb_too(stmts: list[str]) -> None:
    """The same row trigger as on PostgreSQL (CockroachDB v24.3+ runs PL/pgSQL row triggers)."""
    [function] = [s for s in stmts if s.startswith("CREATE FUNCTION audit_log_append_only()")]
    assert "RAISE EXCEPTION" in function and "LANGUAGE plpgsql" in function
    [trigger] = [s for s in stmts if s.startswith("CREATE TRIGGER audit_log_append_only ")]
    assert "BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW" in trigger
    assert not any("TRUNCATE" in s for s in stmts)  # no statement triggers on CockroachDB


def test_agent_versions_and_eval_runs_render_for_cockroachdb(stmts: list[str]) -> None:
    """Migration 0005: the new tables are regional by row, keyed to their agent in the same region, and
    the added columns are plain nullable integers (no backfill, no rewrite of the agents or calls)."""
    localities = _localities(stmts)
    for table in ("agent_versions", "agent_eval_runs"):
        assert localities[table] == ['REGIONAL BY ROW AS "crdb_region"']
        [create] = [s for s in stmts if s.startswith(f"CREATE TABLE {table} (")]
        assert "FOREIGN KEY(agent_id, region) REFERENCES agents (id, region) ON DELETE CASCADE" in create
    [versions] = [s for s in stmts if s.startswith("CREATE TABLE agent_versions (")]
    assert "UNIQUE (region, tenant_id, agent_id, version)" in versions
    assert "ALTER TABLE agents ADD COLUMN published_version INTEGER" in stmts
    assert "ALTER TABLE calls ADD COLUMN agent_version INTEGER" in stmts
    from control.db.migrate import render_sql

    sql = render_sql("cockroachdb:///autospeak", "0003", downgrade_from="0005")
    assert "DROP TABLE agent_versions" in sql and "ALTER TABLE calls DROP COLUMN agent_version" in sql
