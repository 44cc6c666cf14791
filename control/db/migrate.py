"""Run the Alembic migrations from code: upgrade, downgrade, and render SQL without a server."""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from control.db.session import normalize_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%', which URL-encoded passwords and socket paths may contain.
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def _autocommit_needed(engine: AsyncEngine) -> bool:
    # CockroachDB runs each schema change in its own transaction (its Alembic impl has no
    # transactional DDL); PostgreSQL migrates atomically in one.
    return engine.dialect.name == "cockroachdb"


async def _run(engine: AsyncEngine, action: str, revision: str) -> None:
    cfg = alembic_config()

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, revision)

    if _autocommit_needed(engine):
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            await conn.run_sync(run)
    else:
        async with engine.begin() as conn:
            await conn.run_sync(run)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _run(engine, "downgrade", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def render_sql(url: str, revision: str = "head", *, downgrade_from: str | None = None) -> str:
    """The migration as SQL text for the dialect of `url`, with no server (Alembic offline mode).

    `url` only picks the dialect and the database name (used by `ALTER DATABASE` on CockroachDB).
    """
    buf = io.StringIO()
    cfg = Config(output_buffer=buf)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", str(make_url(normalize_url(url))).replace("%", "%%"))
    if downgrade_from is None:
        command.upgrade(cfg, revision, sql=True)
    else:
        command.downgrade(cfg, f"{downgrade_from}:{revision}", sql=True)
    return buf.getvalue()
