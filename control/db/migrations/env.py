"""Alembic environment: online against a live connection (sync or async), offline to SQL text.

The project runs Alembic through `control.db.migrate`, which hands over a connection in
`config.attributes["connection"]`; the `alembic` CLI works too, with `-x url=...`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import make_url
from sqlalchemy.engine import Connection

from control.db.base import Base
from control.db.session import create_engine, normalize_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or use control.db.migrate")
    return url


def _configure(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)


def run_offline() -> None:
    url = make_url(normalize_url(_url()))
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        autospeak_database=url.database or "autospeak",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_sync)
            await conn.commit()
    finally:
        await engine.dispose()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(_run_async(_url()))


if context.is_offline_mode():
    run_offline()
else:
    run_online()
