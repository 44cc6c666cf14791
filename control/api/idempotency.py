"""Idempotency-Key for POSTs that create: the first response is stored per tenant and key, and replayed.

The key row and the created resource are written in one transaction, so either both exist or
neither does. A concurrent request with the same key blocks on the key's unique index until the
first commits, then replays its response; it never creates a second row.

Two-phase (`reserve_key` then `Reservation.store`), for a create with a side effect outside the
database that must not run twice (placing a phone call): the key row commits first, without a
response, together with the resource's provisional rows; the side effect runs after that commit; its
outcome is stored in a second transaction. Meanwhile a request with the same key gets 409 (in
progress), afterwards the stored outcome. If the process dies in between, the key stays "in
progress" until it expires: refusing is safer than doing the side effect twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

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
T = TypeVar("T")


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
        row_id = await _insert_key(session, scope, key, method, path, digest, ttl)
        if row_id is None:
            return await _replay(session, scope, key, digest)
        status, out = await create(session)
        stored = {k: v for k, v in out.items() if k not in hidden}
        await session.execute(scoped_update(IdempotencyKey, scope).where(IdempotencyKey.id == row_id)
                              .values(response_status=status, response_body=stored))
        return Outcome(status, out, False)

    return await run_transaction(sessions(), work, scope=scope)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A committed Idempotency-Key row still waiting for its response (key None: no key was sent)."""

    scope: TenantScope
    key_id: uuid.UUID | None
    redact: frozenset[str]

    async def store(self, session: AsyncSession, status: int, body: dict[str, Any]) -> None:
        """Record the outcome in `session`'s transaction; replays of the key return it from then on."""
        if self.key_id is None:
            return
        stored = {k: v for k, v in body.items() if k not in self.redact}
        await session.execute(
            scoped_update(IdempotencyKey, self.scope)
            .where(IdempotencyKey.id == self.key_id, IdempotencyKey.response_status.is_(None))
            .values(response_status=status, response_body=stored))


@dataclass(frozen=True, slots=True)
class Reserved(Generic[T]):
    value: T
    reservation: Reservation


async def reserve_key(scope: TenantScope, body: Any, begin: Callable[[AsyncSession], Awaitable[T]], *,
                      redact: Iterable[str] = ()) -> Outcome | Reserved[T]:
    """Phase one of a two-phase idempotent create (see the module docstring).

    Inserts the key row and runs `begin` in one transaction and commits it; returns `begin`'s value
    with the Reservation to `store` the outcome on. If the key was used before, returns its stored
    Outcome (replayed), or raises 409 while that request is still in progress (422 for another body).
    """
    key = request_key()
    method, path = request.method, request.path
    digest = fingerprint(method, path, body)
    ttl = api_state().settings.idempotency_ttl
    hidden = frozenset(redact)

    async def work(session: AsyncSession) -> Outcome | Reserved[T]:
        if key is None:
            return Reserved(await begin(session), Reservation(scope, None, hidden))
        row_id = await _insert_key(session, scope, key, method, path, digest, ttl)
        if row_id is None:
            return await _replay(session, scope, key, digest)
        return Reserved(await begin(session), Reservation(scope, row_id, hidden))

    return await run_transaction(sessions(), work, scope=scope)


async def _insert_key(session: AsyncSession, scope: TenantScope, key: str, method: str, path: str,
                      digest: bytes, ttl: Any) -> uuid.UUID | None:
    """Insert the key row (after dropping an expired one); None if the key is taken."""
    now = datetime.now(UTC)
    await session.execute(scoped_delete(IdempotencyKey, scope)
                          .where(IdempotencyKey.key == key, IdempotencyKey.expires_at <= now))
    inserted: uuid.UUID | None = await session.scalar(
        pg_insert(IdempotencyKey)
        .values(id=uuid.uuid4(), tenant_id=scope.tenant_id, region=scope.region, key=key, method=method,
                path=path, request_hash=digest, created_at=now, expires_at=now + ttl)
        .on_conflict_do_nothing(index_elements=["region", "tenant_id", "key"])
        .returning(IdempotencyKey.id)
    )
    return inserted


async def _replay(session: AsyncSession, scope: TenantScope, key: str, digest: bytes) -> Outcome:
    row = await session.scalar(scoped_select(IdempotencyKey, scope).where(IdempotencyKey.key == key))
    # Another body under the same key is a client bug whatever the first request's state.
    if row is not None and row.request_hash != digest:
        raise ApiProblem(422, "Unprocessable content",
                         f"This {HEADER} was used with a different request; use a new key.",
                         slug="idempotency-key-reused")
    if row is None or row.response_status is None or row.response_body is None:
        # A two-phase create still running (or the first request's transaction vanished between our
        # insert and select).
        raise ApiProblem(409, "Conflict", "A request with this Idempotency-Key is still in progress.",
                         slug="idempotency-in-progress")
    return Outcome(row.response_status, dict(row.response_body), True)
