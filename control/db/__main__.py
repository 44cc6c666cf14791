"""`python -m control.db`: apply, inspect or render the schema migrations.

    python -m control.db upgrade --database-url cockroachdb://root@crdb-eu:26257/autospeak?sslmode=disable
    python -m control.db current --database-url postgresql://user@host/autospeak
    python -m control.db render --dialect cockroachdb [--database autospeak]

Exit codes: 0 done, 1 the database refused or could not be reached, 2 bad usage (argparse's code).
Database URLs are echoed with the password hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from control.db.migrate import current_revision, render_sql, upgrade
from control.db.session import create_engine

T = TypeVar("T")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
_DIALECTS: Final = {"postgresql": "postgresql+asyncpg", "cockroachdb": "cockroachdb+asyncpg"}


class UsageError(ValueError):
    """Bad input that argparse cannot see (a malformed or unsupported database URL)."""


def safe_url(url: str) -> str:
    """The URL for messages: password hidden; unparsable URLs are not echoed at all (they may hold one)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable URL>"


def check_database_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UsageError("--database-url is not a database URL (expected postgresql://... "
                         "or cockroachdb://...)") from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres", "cockroachdb"):
        raise UsageError(f"unsupported database {backend!r}: use a postgresql:// or cockroachdb:// URL")
    if not parsed.database:
        raise UsageError(f"{safe_url(url)} names no database")
    return url


async def _with_engine(url: str, fn: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    engine = create_engine(url)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()


def _describe(exc: BaseException) -> str:
    # DBAPIError's str() carries the statement and parameters; the driver's own message is enough.
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}".strip()
    return f"{type(exc).__name__}: {exc}".strip()


def _cmd_upgrade(args: argparse.Namespace) -> int:
    url = check_database_url(args.database_url)

    async def run(engine: AsyncEngine) -> tuple[str | None, str | None]:
        before = await current_revision(engine)
        await upgrade(engine, args.revision)
        return before, await current_revision(engine)

    before, after = asyncio.run(_with_engine(url, run))
    if before == after:
        print(f"{safe_url(url)}: already at revision {after or 'base'}")
    else:
        print(f"{safe_url(url)}: upgraded {before or 'base'} -> {after}")
    return EXIT_OK


def _cmd_current(args: argparse.Namespace) -> int:
    url = check_database_url(args.database_url)
    revision = asyncio.run(_with_engine(url, current_revision))
    print(revision or "base (no migration applied)")
    return EXIT_OK


def _cmd_render(args: argparse.Namespace) -> int:
    # Offline (Alembic --sql): the URL only picks the dialect and the database name used by
    # CockroachDB's ALTER DATABASE statements; nothing is contacted.
    sql = render_sql(f"{_DIALECTS[args.dialect]}:///{args.database}", args.revision)
    sys.stdout.write(sql)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m control.db", description="AutoSpeak schema migrations.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{upgrade,current,render}")

    up = sub.add_parser("upgrade", help="apply the migrations to a database (PostgreSQL or CockroachDB)")
    up.add_argument("--database-url", required=True, help="postgresql://... or cockroachdb://...")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(handler=_cmd_upgrade)

    cur = sub.add_parser("current", help="print the database's current revision")
    cur.add_argument("--database-url", required=True)
    cur.set_defaults(handler=_cmd_current)

    ren = sub.add_parser("render", help="print the migration DDL for a dialect, offline")
    ren.add_argument("--dialect", required=True, choices=sorted(_DIALECTS))
    ren.add_argument("--database", default="autospeak", help="database name used in ALTER DATABASE")
    ren.add_argument("--revision", default="head")
    ren.set_defaults(handler=_cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        parser.error(str(exc))  # exits with 2
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        print(f"error: database driver not available: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        target = safe_url(getattr(args, "database_url", "") or "")
        print(f"error: {args.command} failed on {target}: {_describe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # alembic's CommandError (unknown revision) and driver errors
        # Driver errors (asyncpg's own, raised during connect) do not share a base class with
        # SQLAlchemy's; report them the same way instead of a traceback.
        print(f"error: {args.command} failed: {_describe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
