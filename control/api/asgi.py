"""The control API as an ASGI application configured from the environment, for any ASGI server.

    AUTOSPEAK_REGION=eu AUTOSPEAK_DATABASE_URL=postgresql+asyncpg://... \\
        granian --interface asgi --factory control.api.asgi:app
    hypercorn 'control.api.asgi:app()'

Variables: AUTOSPEAK_REGION (required), AUTOSPEAK_DATABASE_URL (required), AUTOSPEAK_CELLS
("eu=URL,in=URL,us=URL", optional), AUTOSPEAK_RATE_PER_SECOND and AUTOSPEAK_RATE_BURST (per-token
rate limit, optional), AUTOSPEAK_PLATFORM_TOKEN (the operator secret that creates tenants),
AUTOSPEAK_ALLOW_PRIVATE_WEBHOOKS=1 (dev only: webhooks to loopback/private hosts). The app
opens its database engine in Quart's `before_serving`, which runs on the
ASGI lifespan startup: granian's `asgi` interface and hypercorn both send it (granian's `asginl` would
not, and every request would then fail on a missing engine).

This serves the REST API alone (no NATS, no event consumer); `python -m control.cell` runs a whole cell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from quart import Quart

from control.api.app import create_control_app
from control.api.sealing import SECRETS_KEY_ENV, parse_region_key
from control.api.settings import ControlSettings

ENV_REGION = "AUTOSPEAK_REGION"
ENV_DATABASE_URL = "AUTOSPEAK_DATABASE_URL"
ENV_CELLS = "AUTOSPEAK_CELLS"
ENV_RATE_PER_SECOND = "AUTOSPEAK_RATE_PER_SECOND"
ENV_RATE_BURST = "AUTOSPEAK_RATE_BURST"
ENV_PLATFORM_TOKEN = "AUTOSPEAK_PLATFORM_TOKEN"
ENV_ALLOW_PRIVATE_WEBHOOKS = "AUTOSPEAK_ALLOW_PRIVATE_WEBHOOKS"


def parse_cells(text: str) -> dict[str, str]:
    """'eu=URL,in=URL' -> {"eu": URL, "in": URL}; ControlSettings validates the regions and URLs."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        code, sep, url = item.partition("=")
        if not sep or not code.strip() or not url.strip():
            raise ValueError(f"{ENV_CELLS} entries read region=URL, got {item!r}")
        if code.strip() in out:
            raise ValueError(f"{ENV_CELLS} names region {code.strip()!r} twice")
        out[code.strip()] = url.strip()
    return out


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


def settings_from_env(env: Mapping[str, str] | None = None) -> ControlSettings:
    """ControlSettings from AUTOSPEAK_* variables; a missing or malformed one is a ValueError naming it."""
    env = os.environ if env is None else env
    missing = [n for n in (ENV_REGION, ENV_DATABASE_URL) if not env.get(n, "").strip()]
    if missing:
        raise ValueError(f"set {' and '.join(missing)} to serve the control API")
    extra: dict[str, object] = {}
    rate = _number(env, ENV_RATE_PER_SECOND, float)
    burst = _number(env, ENV_RATE_BURST, int)
    if rate is not None:
        extra["rate_per_second"] = rate
    if burst is not None:
        extra["rate_burst"] = burst
    return ControlSettings(
        region=env[ENV_REGION].strip(),
        database_url=env[ENV_DATABASE_URL].strip(),
        cells=parse_cells(env.get(ENV_CELLS, "")),
        platform_token=env.get(ENV_PLATFORM_TOKEN) or None,
        allow_private_webhooks=env.get(ENV_ALLOW_PRIVATE_WEBHOOKS, "") == "1",
        secrets_key=parse_region_key(env.get(SECRETS_KEY_ENV)),
        **extra,  # type: ignore[arg-type]
    )


def app() -> Quart:
    """ASGI app factory (granian `--factory control.api.asgi:app`, hypercorn `'control.api.asgi:app()'`)."""
    return create_control_app(settings_from_env())
