"""Per-app runtime state: the database engine and the rate limiter, created when the app starts serving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from quart import current_app
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from control.api.ratelimit import TokenBuckets
from control.api.settings import ControlSettings

EXTENSION_KEY: Final = "autospeak.control"


@dataclass
class ApiState:
    settings: ControlSettings
    limiter: TokenBuckets
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None


def api_state() -> ApiState:
    return current_app.extensions[EXTENSION_KEY]


def sessions() -> async_sessionmaker[AsyncSession]:
    factory = api_state().sessions
    if factory is None:
        raise RuntimeError("the control API is not serving (no database engine yet)")
    return factory
