"""Idempotency-Key for POSTs that create: the first response is stored per tenant and key, and replayed.

The key row and the created resource are written in one transaction, so either both exist or
neither does. A concurrent request with the same key blocks on the key's unique index until the
first commits, then replays its response; it never creates a second row.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from quart import request
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.problems import ApiProblem
from control.api.state import api_state, sessions
from control.db.models import IdempotencyKey
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_delete, scoped_select, scoped_update

HEADER: Final = "Idempotency-Key"
REPLAY_HEADER: Final = "Idempotent-Replayed"
MAX_KEY_LEN: Final = 255

Create = Callable[[AsyncSession], Awaitable[tuple[int, dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool


def request_key() -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LEN or not key.isascii() or not key.isprintable():
        raise ApiProblem(400, "Bad Request",
                         f"{HEADER} must be 1 to {MAX_KEY_LEN} printable ASCII characters.",
                         slug="bad-idempotency-key")
    return key


def fingerprint(method: str, path: str, body: Any) -> bytes:
    # Canonical JSON of the validated body: key order and whitespace do not make a "different" body.
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method}\n{path}\n{canon}".encode()).digest()


async def idempotent_create(scope: TenantScope, body: Any, create: Create, *,
                            redact: Iterable[str] = ()) -> Outcome:
    """Run `create` once per (tenant, Idempotency-Key); without a key, just run it.

    `redact` names top-level response fields that must not be stored (a token's secret): a replay
    returns the stored response without them, since a secret is shown once.
    """
    key = request_key()
    method, path = request.method, request.path
    digest = fingerprint(method, path, body)
    ttl = api_state().settings.idempotency_ttl
    hidden = frozenset(redact)

    async def work(session: AsyncSession) -> Outcome:
        if key is None:
            status, out = await create(session)
            return Outcome(status, out, False)
        now = datetime.now(UTC)
        await session.execute(scoped_delete(IdempotencyKey, scope)
                              .where(IdempotencyKey.key == key, IdempotencyKey.expires_at <= now))
        row_id = uuid.uuid4()
        inserted = await session.scalar(
            pg_insert(IdempotencyKey)
            .values(id=row_id, tenant_id=scope.tenant_id, region=scope.region, key=key, method=method,
                    path=path, request_hash=digest, created_at=now, expires_at=now + ttl)
            .on_conflict_do_nothing(index_elements=["region", "tenant_id", "key"])
            .returning(IdempotencyKey.id)
        )
        if inserted is None:
            return await _replay(session, scope, key, digest)
        status, out = await create(session)
        stored = {k: v for k, v in out.items() if k not in hidden}
        await session.execute(scoped_update(IdempotencyKey, scope).where(IdempotencyKey.id == row_id)
                              .values(response_status=status, response_body=stored))
        return Outcome(status, out, False)

    return await run_transaction(sessions(), work, scope=scope)


async def _replay(session: AsyncSession, scope: TenantScope, key: str, digest: bytes) -> Outcome:
    row = await session.scalar(scoped_select(IdempotencyKey, scope).where(IdempotencyKey.key == key))
    if row is None or row.response_status is None or row.response_body is None:
        # Only possible if the first request's transaction vanished between our insert and select.
        raise ApiProblem(409, "Conflict", "A request with this Idempotency-Key is still in progress.",
                         slug="idempotency-in-progress")
    if row.request_hash != digest:
        raise ApiProblem(422, "Unprocessable content",
                         f"This {HEADER} was used with a different request; use a new key.",
                         slug="idempotency-key-reused")
    return Outcome(row.response_status, dict(row.response_body), True)
