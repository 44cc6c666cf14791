"""Small helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

from pydantic import BaseModel
from quart import Response
from sqlalchemy import ColumnElement, Select
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.idempotency import REPLAY_HEADER, Outcome
from control.api.routes.params import not_found
from control.db.base import Regional
from control.db.tenancy import TenantScope, scoped_select

TENANT_PREFIX: Final = "/v1/tenants/<uuid:tenant_id>"

R = TypeVar("R", bound=Regional)


def json_response(body: BaseModel | dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body, default=str)
    resp = Response(text, status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def outcome_response(outcome: Outcome, location: str | None = None) -> Response:
    headers = {REPLAY_HEADER: "true"} if outcome.replayed else {}
    if location:
        headers["Location"] = location
    return json_response(outcome.body, outcome.status, headers)


async def fetch_page(session: AsyncSession, stmt: Select[Any], *, limit: int,
                     offset: int) -> tuple[list[Any], int | None]:
    """The page's rows of the ordered `stmt` and the offset of the next page (None on the last)."""
    # One row more than the page tells whether another page exists, without a count query.
    rows = list(await session.scalars(stmt.offset(offset).limit(limit + 1)))
    return rows[:limit], offset + limit if len(rows) > limit else None


async def scoped_one(session: AsyncSession, model: type[R], scope: TenantScope, *where: ColumnElement[bool],
                     lock: bool = False) -> R:
    """The tenant's one `model` row matching `where` (locked FOR UPDATE if `lock`), else a 404."""
    stmt = scoped_select(model, scope).where(*where)
    row = await session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise not_found()
    return row
