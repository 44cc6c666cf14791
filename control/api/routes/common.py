"""Small helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import BaseModel
from quart import Response, request

from control.api.idempotency import REPLAY_HEADER, Outcome
from control.api.problems import validation_problem

TENANT_PREFIX: Final = "/v1/tenants/<uuid:tenant_id>"


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


def int_query(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise validation_problem([{"path": f"query.{name}", "message": f"an integer from {lo} to {hi}",
                                   "code": "int_range"}])
    return int(raw)
