"""GET /metrics (Prometheus text format) and GET /traces/recent (JSON) for a worker's Quart app.

Both are for the operator's network, not for tenants: they carry no tenant data beyond opaque ids in
traces, and need no tenant token. When AUTOSPEAK_METRICS_TOKEN is set they also require
`Authorization: Bearer <that token>` (for a worker whose port is reachable from elsewhere).
"""

from __future__ import annotations

import hmac
import os

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response, jsonify, request

from cells.observability.calls import WorkerTelemetry

TOKEN_ENV = "AUTOSPEAK_METRICS_TOKEN"


def operator_allowed(token: str | None) -> bool:
    """True when no operator token is configured or the request carries it."""
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def telemetry_blueprint(telemetry: WorkerTelemetry, token: str | None = None) -> Blueprint:
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    bp = Blueprint("telemetry", __name__)

    @bp.before_request
    async def _operator_only() -> Response | None:
        if operator_allowed(token):
            return None
        return Response("operator token required\n", 401, {"WWW-Authenticate": "Bearer"},
                        content_type="text/plain")

    @bp.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(telemetry.metrics.registry), content_type=CONTENT_TYPE_LATEST)

    @bp.get("/traces/recent")
    async def recent() -> Response:
        try:
            limit = min(200, max(1, int(request.args.get("limit", "50"))))
        except ValueError:
            return Response("limit must be a whole number\n", 400, content_type="text/plain")
        return jsonify({"traces": telemetry.recent.recent(limit, request.args.get("call_id"))})

    return bp
