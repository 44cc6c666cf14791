"""A control API app on the real embedded PostgreSQL, driven through Quart's test client.

Tenants: `a` and `b` homed in eu (the app's own cell), `c` homed in us. Each has an owner token from
`bootstrap_tenant`; `a` also gets admin, operator, viewer and expired tokens.
"""

from __future__ import annotations

import json as jsonlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from db_fixtures import Database, embedded_database
from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession

from control.api import ControlSettings, bootstrap_tenant, create_control_app
from control.api.auth import make_token_row
from control.db.migrate import upgrade
from control.db.session import run_transaction
from control.db.tenancy import TenantScope

CELLS = {
    "eu": "http://eu.cell.test:14010",
    "in": "http://in.cell.test:14110",
    "us": "http://us.cell.test:14210",
}


@dataclass
class Reply:
    status: int
    headers: Any
    body: Any
    text: str


@dataclass
class Api:
    db: Database
    app: Quart
    tenants: dict[str, uuid.UUID] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # "a:owner" -> plaintext

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if json is not None:
            data = jsonlib.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        return self.db.run(self._call(method, path, hdrs, data))

    async def _call(self, method: str, path: str, headers: dict[str, str], data: Any) -> Reply:
        client = self.app.test_client()
        resp = await client.open(path, method=method, headers=headers, data=data)
        text = await resp.get_data(as_text=True)
        body = jsonlib.loads(text) if text and "json" in (resp.content_type or "") else None
        return Reply(resp.status_code, resp.headers, body, text)

    def tenant_path(self, label: str, rest: str = "") -> str:
        return f"/v1/tenants/{self.tenants[label]}{rest}"


def settings_for(db: Database, **overrides: Any) -> ControlSettings:
    return ControlSettings(**{"region": "eu", "database_url": db.url, "cells": CELLS, **overrides})


@contextmanager
def serving(db: Database, settings: ControlSettings) -> Iterator[Quart]:
    app = create_control_app(settings)
    test_app = app.test_app()
    db.run(test_app.__aenter__())
    try:
        yield app
    finally:
        db.run(test_app.__aexit__(None, None, None))


def seed(db: Database, api: Api) -> None:
    for label, region in (("a", "eu"), ("b", "eu"), ("c", "us")):

        async def boot(session: AsyncSession, label: str = label, region: str = region) -> tuple[Any, str]:
            return await bootstrap_tenant(session, f"tenant {label}", region)

        tenant, owner = db.run(run_transaction(db.sessions, boot))
        api.tenants[label] = tenant.id
        api.tokens[f"{label}:owner"] = owner
    scope = TenantScope(api.tenants["a"], "eu")
    for role, ttl in (
        ("admin", None),
        ("operator", None),
        ("viewer", None),
        ("expired", timedelta(seconds=-1)),
    ):

        async def mint(session: AsyncSession, role: str = role, ttl: timedelta | None = ttl) -> str:
            row, plaintext = make_token_row(scope, "admin" if role == "expired" else role, ttl=ttl)
            session.add(row)
            return plaintext

        api.tokens[f"a:{role}"] = db.run(run_transaction(db.sessions, mint, scope=scope))


@contextmanager
def control_api(**overrides: Any) -> Iterator[Api]:
    with embedded_database() as db:
        db.run(upgrade(db.engine))
        with serving(db, settings_for(db, **overrides)) as app:
            api = Api(db, app)
            seed(db, api)
            yield api


AGENT = {
    "name": "Front desk",
    "vertical": "reception",
    "persona": "Warm, brief, never guesses.",
    "voice": {"provider": "espeak", "voice_id": "en-gb", "language": "en-GB", "speed": 1.1},
    "providers": {
        "stt": {"name": "pocketsphinx"},
        "llm": {"name": "local", "options": {"temperature": 0.2}},
        "tts": {"name": "espeak"},
    },
    "tools": [
        {
            "name": "create_booking",
            "description": "Book a slot",
            "requires_confirmation": True,
            "parameters": {"type": "object", "properties": {"when": {"type": "string"}}},
        }
    ],
    "flows": {
        "booking": {
            "start": "ask",
            "states": {"ask": {"prompt": "When?", "next": ["confirm"]}, "confirm": {"prompt": "Confirm?"}},
        }
    },
    "compliance": {"record_calls": True, "retention_days": 30},
}


# --- helpers for the resource route tests (users, numbers, calls, consents, webhooks, usage) ---------

FAST = {"rate_per_second": 10_000.0, "rate_burst": 10_000}
"""Settings overrides for test modules that send many requests with one token."""


def scope_for(api: Api, label: str) -> TenantScope:
    return TenantScope(api.tenants[label], "us" if label == "c" else "eu")


def insert(api: Api, label: str, *rows: Any) -> None:
    """Write rows straight into a tenant's scope, as the event consumer would (calls, turns, ...)."""

    async def add(session: AsyncSession) -> None:
        for row in rows:
            session.add(row)
            await session.flush()  # in order: a turn's foreign key needs its call first

    api.db.run(run_transaction(api.db.sessions, add, scope=scope_for(api, label)))


def fetch(api: Api, model: type, **where: Any) -> list[Any]:
    """Rows of `model` across tenants (a test's view of the database, not the API's)."""
    from sqlalchemy import select

    async def read() -> list[Any]:
        async with api.db.sessions() as s:
            stmt = select(model).filter_by(**where).execution_options(autospeak_unscoped="test")
            return list(await s.scalars(stmt))

    return api.db.run(read())


@contextmanager
def api_with(api: Api, **overrides: Any) -> Iterator[Api]:
    """The same database and tenants behind a second app with other settings (a dialer, a store)."""
    with serving(api.db, settings_for(api.db, **{**FAST, **overrides})) as app:
        yield Api(api.db, app, api.tenants, api.tokens)
