"""Alembic migrations on a real embedded PostgreSQL: apply from empty, match the models, downgrade."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from db_fixtures import Database, embedded_database
from sqlalchemy import text
from sqlalchemy.engine import Connection

from control.db import models  # noqa: F401  (registers every table on Base.metadata)
from control.db.base import Base, global_models, regional_models
from control.db.migrate import current_revision, downgrade, render_sql, upgrade
from control.db.session import create_engine
from control.db.topology import REGIONS


@pytest.fixture(scope="module")
def db() -> Iterator[Database]:
    with embedded_database() as database:
        yield database


async def _rows(db: Database, sql: str, **params: Any) -> list[Any]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def _user_tables(db: Database) -> set[str]:
    rows = await _rows(
        db,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    return {r[0] for r in rows}


def test_upgrade_from_empty_creates_every_model_table(db: Database) -> None:
    assert db.run(current_revision(db.engine)) is None
    assert db.run(_user_tables(db)) == set()
    db.run(upgrade(db.engine))
    assert db.run(current_revision(db.engine)) == "0005"
    expected = {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}
    assert db.run(_user_tables(db)) == expected
    assert db.run(_rows(db, "SELECT extname FROM pg_extension WHERE extname = 'vector'")) == [("vector",)]


def test_regional_tables_are_list_partitioned_by_region_without_default(db: Database) -> None:
    parents = db.run(
        _rows(
            db,
            "SELECT c.relname, pt.partstrat::text, pg_get_partkeydef(c.oid) FROM pg_partitioned_table pt "
            "JOIN pg_class c ON c.oid = pt.partrelid",
        )
    )
    regional = {m.__tablename__ for m in regional_models()}  # type: ignore[attr-defined]
    assert {name for name, _, _ in parents} == regional
    assert all(strat == "l" and key == "LIST (region)" for _, strat, key in parents)

    bounds = db.run(
        _rows(
            db,
            "SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE c.relkind IN ('r', 'p')",
        )
    )
    by_parent: dict[str, dict[str, str]] = {}
    for parent, child, bound in bounds:
        by_parent.setdefault(parent, {})[child] = bound
    for table in regional:
        assert by_parent[table] == {f"{table}_{r}": f"FOR VALUES IN ('{r}')" for r in REGIONS}
    assert not any(bound == "DEFAULT" for _, _, bound in bounds)
    # Directory tables stay whole: every region reads them.
    globals_ = {m.__tablename__ for m in global_models()}  # type: ignore[attr-defined]
    assert globals_.isdisjoint(by_parent)


def _diff(connection: Connection) -> list[Any]:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
        # Partitions and Alembic's own table are not models; nor are the foreign keys PostgreSQL
        # clones onto each partition of a referenced partitioned table.
        if type_ == "table" and reflected and name not in Base.metadata.tables:
            return False
        if type_ == "foreign_key_constraint" and reflected:
            return obj.referred_table.name in Base.metadata.tables
        return True

    ctx = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": include, "target_metadata": Base.metadata}
    )
    return list(compare_metadata(ctx, Base.metadata))


def test_migrated_schema_matches_the_models(db: Database) -> None:
    async def diff() -> list[Any]:
        async with db.engine.connect() as conn:
            return await conn.run_sync(_diff)

    assert db.run(diff()) == []


def test_offline_postgresql_rendering_partitions_and_enables_pgvector() -> None:
    sql = render_sql("postgresql:///autospeak")
    assert "CREATE EXTENSION IF NOT EXISTS vector" in sql
    for model in regional_models():
        name = model.__tablename__  # type: ignore[attr-defined]
        assert f"CREATE TABLE {name} (" in sql
        for region in REGIONS:
            assert f'CREATE TABLE "{name}_{region}" PARTITION OF "{name}" FOR VALUES IN (\'{region}\')' in sql
    assert "PARTITION OF" in sql and "DEFAULT" not in sql.split("PARTITION OF", 1)[1].split(";")[0]
    assert "LOCALITY" not in sql and "crdb_region" not in sql


def test_downgrade_to_base_and_upgrade_again(db: Database) -> None:
    db.run(downgrade(db.engine))
    assert db.run(current_revision(db.engine)) is None
    assert db.run(_user_tables(db)) == {"alembic_version"}
    assert db.run(_rows(db, "SELECT extname FROM pg_extension WHERE extname = 'vector'")) == []
    assert db.run(_rows(db, "SELECT count(*) FROM pg_class WHERE relispartition")) == [(0,)]
    db.run(upgrade(db.engine))
    assert db.run(current_revision(db.engine)) == "0005"


def test_data_survives_a_restart_of_the_embedded_server(db: Database) -> None:
    db.run(db.engine.dispose())
    db.pg.stop()
    assert not db.pg.running
    url = db.pg.start()  # same data directory: no initdb, no new database
    engine = create_engine(url)
    try:
        assert db.run(current_revision(engine)) == "0005"
    finally:
        db.run(engine.dispose())
