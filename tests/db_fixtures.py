"""A real embedded PostgreSQL for the data-layer tests, with one event loop per test module.

The loop is shared by the module's tests because asyncpg connections belong to the loop that opened
them; `asyncio.Runner` keeps that loop alive between tests without a pytest plugin.
"""

from __future__ import annotations

import asyncio
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
def embedded_database(data_dir: Path) -> Iterator[Database]:
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
