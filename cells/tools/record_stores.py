"""Where a `record` tool's writes go: the cell's control plane over NATS (the tenant's regional database),
or, for a single embedded worker with no cell (`autospeak call`), a local SQLite file. Same interface
(cells.tools.record.RecordStore), same idempotency key and capacity rule (cells.contract.records)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cells.contract.records import (
    RecordRefused,
    RecordWrite,
    check_capacity,
    records_write_subject,
    write_problems,
)

_SCHEMA = """CREATE TABLE IF NOT EXISTS tool_records (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, agent_id TEXT NOT NULL, call TEXT NOT NULL,
    call_id TEXT, tool TEXT NOT NULL, kind TEXT NOT NULL, arguments TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (tenant_id, idempotency_key))"""
_COLUMNS = ("id", "tenant_id", "agent_id", "call", "call_id", "tool", "kind", "arguments", "created_at")


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(_COLUMNS, values, strict=True))
    out["arguments"] = json.loads(out["arguments"])
    return out


class SqliteRecordStore:
    """One file of records (the embedded worker's data dir); each write is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        db.execute(_SCHEMA)
        return db

    async def put(self, write: RecordWrite) -> tuple[dict[str, Any], bool]:
        problems = write_problems(write)
        if problems:
            raise RecordRefused("invalid_record", "; ".join(problems))
        return await asyncio.to_thread(self._put, write)

    def _put(self, write: RecordWrite) -> tuple[dict[str, Any], bool]:
        cols = ", ".join(_COLUMNS)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # the capacity check and the insert see the same records
            try:
                found = db.execute(f"SELECT {cols} FROM tool_records WHERE tenant_id = ? "
                                   "AND idempotency_key = ?", (write.tenant_id, write.key)).fetchone()
                if found:
                    db.execute("COMMIT")
                    return _row(found), False
                if write.capacity is not None:
                    held = db.execute("SELECT arguments FROM tool_records WHERE tenant_id = ? "
                                      "AND agent_id = ? AND tool = ?",
                                      (write.tenant_id, write.agent_id, write.tool)).fetchall()
                    check_capacity(write.capacity, write.arguments, (json.loads(h[0]) for h in held))
                values = (str(uuid.uuid4()), write.tenant_id, write.agent_id, write.call, write.call_id,
                          write.tool, write.kind, json.dumps(write.arguments, sort_keys=True),
                          datetime.now(UTC).isoformat())
                db.execute(f"INSERT INTO tool_records ({cols}, idempotency_key) VALUES "
                           f"({', '.join('?' * len(_COLUMNS))}, ?)", (*values, write.key))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return _row(values), True

    def list(self, tenant_id: str, *, kind: str | None = None,
             call: str | None = None) -> list[dict[str, Any]]:
        """The tenant's records, oldest first (for `autospeak call`'s report and the tests)."""
        if not self.path.exists():
            return []
        query = f"SELECT {', '.join(_COLUMNS)} FROM tool_records WHERE tenant_id = ?"
        params: list[Any] = [tenant_id]
        for column, value in (("kind", kind), ("call", call)):
            if value is not None:
                query += f" AND {column} = ?"
                params.append(value)
        with self._connect() as db:
            return [_row(r) for r in db.execute(query + " ORDER BY created_at, id", params).fetchall()]


class NatsRecordStore:
    """A cell worker's store: the write goes to the region's control plane, which answers once stored."""

    def __init__(self, nc: Any, region: str, *, timeout_s: float = 2.5) -> None:
        self.nc, self.subject, self.timeout_s = nc, records_write_subject(region), timeout_s

    @classmethod
    def for_worker(cls, nc: Any, region: str) -> NatsRecordStore | None:
        return cls(nc, region) if nc is not None and region else None

    async def put(self, write: RecordWrite) -> tuple[dict[str, Any], bool]:
        body = json.dumps(write.to_json()).encode()
        msg = await self.nc.request(self.subject, body, timeout=self.timeout_s)
        answer = json.loads(msg.data)
        if not isinstance(answer, Mapping):
            raise ValueError("the record store's answer is not an object")
        if answer.get("ok") is True and isinstance(answer.get("record"), Mapping):
            return dict(answer["record"]), bool(answer.get("created"))
        if answer.get("ok") is False and answer.get("error") in ("invalid_record", "invalid_dates",
                                                                 "unknown_option", "unavailable"):
            raise RecordRefused(str(answer["error"]), str(answer.get("message") or ""))
        raise RuntimeError(f"the record store failed: {answer.get('error')}")
