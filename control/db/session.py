"""Async engines and sessions, and a transaction runner that retries serialization failures.

One async driver, asyncpg, serves both databases: `postgresql+asyncpg` and `cockroachdb+asyncpg`
(sqlalchemy-cockroachdb). CockroachDB runs every transaction SERIALIZABLE and asks the client to
retry with SQLSTATE 40001; PostgreSQL raises the same code under SERIALIZABLE or REPEATABLE READ.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from control.db.tenancy import TenantScope, scoped_select, tenant_session, unscoped

T = TypeVar("T")
log = logging.getLogger(__name__)

SERIALIZATION_FAILURE: Final = "40001"
_ASYNC_DRIVERS: Final = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
                         "cockroachdb": "cockroachdb+asyncpg"}


def normalize_url(url: str) -> str:
    """Give a bare `postgresql://` or `cockroachdb://` URL the async driver; keep explicit ones."""
    parsed = make_url(url)
    if parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(normalize_url(url), **kwargs)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects returned from a transaction stay readable after it commits.
    return async_sessionmaker(engine, expire_on_commit=False)


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE behind an error, whichever driver raised it.

    SQLAlchemy wraps the driver error in DBAPIError.orig. For asyncpg that is SQLAlchemy's adapter
    error, which copies `sqlstate` (and `pgcode`) from the asyncpg exception it chains as __cause__;
    psycopg 3 exposes `sqlstate` and psycopg2 `pgcode` on .orig directly. Walk the chain to be safe.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        for attr in ("sqlstate", "pgcode"):
            code = getattr(err, attr, None)
            if isinstance(code, str) and code:
                return code
        stack.extend([getattr(err, "orig", None), err.__cause__, err.__context__])
    return None


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and sqlstate_of(exc) == SERIALIZATION_FAILURE


async def run_transaction(
    sessions: async_sessionmaker[AsyncSession],
    fn: Callable[[AsyncSession], Awaitable[T]],
    *,
    scope: TenantScope | None = None,
    max_attempts: int = 8,
    base_delay: float = 0.005,
    max_delay: float = 0.5,
    isolation_level: str | None = None,
) -> T:
    """Run `fn(session)` in a fresh transaction, retrying the whole function on SQLSTATE 40001.

    The function must be safe to run more than once (no side effects outside the session), because
    on a retry every statement runs again from the start. A failure at COMMIT is retried too, since
    CockroachDB often reports the conflict there. Backoff is exponential with full jitter.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    for attempt in range(1, max_attempts + 1):
        session = sessions()
        if scope is not None:
            tenant_session(session, scope)
        try:
            async with session, session.begin():
                if isolation_level is not None:
                    await session.connection(execution_options={"isolation_level": isolation_level})
                return await fn(session)
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == max_attempts:
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            log.debug("SQLSTATE 40001 on attempt %d/%d; retrying in %.3fs", attempt, max_attempts, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


__all__ = [
    "SERIALIZATION_FAILURE", "TenantScope", "create_engine", "is_retryable", "normalize_url",
    "run_transaction", "scoped_select", "session_factory", "sqlstate_of", "tenant_session", "unscoped",
]
