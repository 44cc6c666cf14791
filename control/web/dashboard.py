"""The SRE dashboard page and its live data (polled by static/dashboard.js every few seconds).

Tenant data on it is the signed-in tenant's only; the cell's own health (database, NATS, the event
consumer) is not tenant data. Other regions' cells are links to their own dashboards, never fetched.
"""

from __future__ import annotations

from typing import Any

from quart import Response, current_app, request

from control.api import app as api_app
from control.api.routes.common import json_response
from control.api.state import api_state, sessions
from control.db.tenancy import TenantScope
from control.web.core import bp, page, signed_in, web_session
from control.web.dashboard_data import STAGES, WINDOWS_H, dashboard_data
from control.web.timeline import LABELS
from control.web.workers import worker_load


def _hours() -> int:
    raw = request.args.get("hours", "24")
    return int(raw) if raw.isdigit() and int(raw) in WINDOWS_H else 24


def _cell_health() -> dict[str, Any]:
    probe = current_app.extensions.get(api_app.HEALTH_PROBE_KEY)
    if probe is None:
        return {"mode": "API only (no NATS configured)"}
    health = probe()
    consumer = health.get("consumer") or {}
    return {"ok": bool(health.get("ok", True)), "nats": bool(health.get("nats")),
            "consumer_running": bool(consumer.get("running")) if consumer else None}


async def _data() -> dict[str, Any]:
    session = web_session()
    assert session is not None  # signed_in ran first
    scope = TenantScope(session.tenant, api_state().settings.region)
    data = await dashboard_data(sessions(), scope, _hours())
    data["cell"] = _cell_health()
    data["workers"] = worker_load(current_app).snapshot()  # the region's workers, not tenant data
    return data


@bp.get("/dashboard")
@signed_in
async def dashboard() -> Response:
    data = await _data()
    return await page("dashboard.html", title="Dashboard", data=data, stages=STAGES, labels=LABELS,
                      windows=WINDOWS_H, hours=data["window_hours"])


@bp.get("/dashboard/data.json")
@signed_in
async def dashboard_json() -> Response:
    return json_response(await _data())
