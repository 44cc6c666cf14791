"""Request timing hooks and GET /metrics for a control app.

/metrics is for the operator's network (Prometheus inside the cell), not for tenants: it needs no
tenant token and holds no tenant data. When AUTOSPEAK_METRICS_TOKEN is set it also requires
`Authorization: Bearer <that token>`.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Callable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Quart, Response, current_app, g, request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from control.observability.metrics import ControlMetrics

METRICS_KEY: Final = "autospeak.metrics"
TOKEN_ENV: Final = "AUTOSPEAK_METRICS_TOKEN"
DB_CHECK_TIMEOUT_S: Final = 1.0
PROBE_TIMEOUT_S: Final = 1.0


def control_metrics(app: Quart | None = None) -> ControlMetrics:
    return (app or current_app).extensions[METRICS_KEY]


def install_metrics(app: Quart, region: str, engine: Callable[[], AsyncEngine | None],
                    token: str | None = None) -> ControlMetrics:
    """`engine()`: the app's database engine when serving (None before), checked at each scrape."""
    metrics = ControlMetrics(region)
    app.extensions[METRICS_KEY] = metrics
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None

    @app.before_request
    async def _clock_in() -> None:
        g.autospeak_request_start = time.perf_counter()

    @app.after_request
    async def _clock_out(response: Response) -> Response:
        start = g.get("autospeak_request_start")
        if start is not None:
            rule = request.url_rule
            # The template ("/v1/tenants/<uuid:tenant_id>/calls"), never the path with its ids.
            route = rule.rule if rule is not None else "unmatched"
            metrics.request_done(route, request.method, response.status_code, time.perf_counter() - start)
        return response

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        if token:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return Response("operator token required\n", 401, {"WWW-Authenticate": "Bearer"},
                                content_type="text/plain")
        await _check_database(metrics, engine())
        for probe in metrics.probes:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await probe()
            except Exception:  # a probe sets its own "unknown"; the scrape still answers
                pass
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)

    return metrics


async def _check_database(metrics: ControlMetrics, engine: AsyncEngine | None) -> None:
    start = time.perf_counter()
    up = False
    if engine is not None:
        try:
            async with asyncio.timeout(DB_CHECK_TIMEOUT_S):
                async with engine.connect() as conn:
                    up = (await conn.scalar(text("SELECT 1"))) == 1
        except Exception:  # down, slow or refusing: the gauge says so, the scrape still answers
            up = False
    metrics.database_checked(up, time.perf_counter() - start)
