"""Render the CockroachDB multi-region DDL from the Alembic migrations, with no server.

Alembic's offline mode runs the same revisions against the `cockroachdb` dialect of
sqlalchemy-cockroachdb and writes SQL instead of executing it, so the production schema can be read,
reviewed and tested here. The docker-compose CockroachDB service can apply the output at start:

    python -m control.db.cockroach_ddl --database autospeak > schema.sql
"""

from __future__ import annotations

import argparse
import sys

from control.db.migrate import render_sql


def render_cockroach_ddl(database: str = "autospeak", revision: str = "head") -> str:
    return render_sql(f"cockroachdb+asyncpg:///{database}", revision)


def statements(sql: str) -> list[str]:
    """Split rendered SQL into statements (one per `;` at a line end), comments dropped."""
    out: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if line.startswith("--") or not line.strip():
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(current).rstrip().rstrip(";").strip())
            current = []
    if current:
        out.append("\n".join(current).strip())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="autospeak")
    parser.add_argument("--revision", default="head")
    args = parser.parse_args(argv)
    sys.stdout.write(render_cockroach_ddl(args.database, args.revision))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
