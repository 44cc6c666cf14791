"""A real embedded PostgreSQL for the data-layer tests, with one event loop per test module.

The loop is shared by the module's tests because asyncpg connections belong to the loop that opened
them; `asyncio.Runner` keeps that loop alive between tests without a pytest plugin.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from control.db.pg_embedded import EmbeddedPostgres
from control.db.session import create_engine, session_factory

T = TypeVar("T")


@dataclass
class Database:
    pg: EmbeddedPostgres
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    runner: asyncio.Runner

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)


@contextmanager
def embedded_database() -> Iterator[Database]:
    # Not under pytest's basetemp: pytest resets /tmp/pytest-of-<user> to mode 0700 whenever any
    # pytest run starts, and when the tests run as root the server runs as the `pgserver` user, who
    # must be able to traverse every parent of its data directory.
    data_dir = Path(tempfile.mkdtemp(prefix="autospeak-pg-test-"))
    pg = EmbeddedPostgres(data_dir / "pg", database="autospeak_test")
    runner = asyncio.Runner()
    try:
        url = pg.start()
        engine = create_engine(url)
        try:
            yield Database(pg, url, engine, session_factory(engine), runner)
        finally:
            runner.run(engine.dispose())
    finally:
        runner.close()
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
