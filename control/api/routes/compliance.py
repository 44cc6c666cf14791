"""Compliance routes: the audit log (read, export), retention settings and runs, caller erasure.

Every route needs the admin role (owner or admin). The audit log has no route that changes a row.
This blueprint also installs the audit hook: after every mutating request on a tenant route that got
past authentication (allowed or refused by role), one row records who (token id and role), what
(method and route), to which resource, the outcome, when and from which network, unless the route
wrote its own row (`control.api.audit.record`: `webhook_endpoint.update` says more than the route).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import nats
from pydantic import BaseModel, Field
from quart import Blueprint, Response, g, request
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import AuthContext, current_auth, require
from control.api.openapi import QueryParam, operation
from control.api.problems import ApiProblem, validation_problem
from control.api.routes.common import TENANT_PREFIX, fetch_page, json_response
from control.api.routes.params import (
    DATETIME_SCHEMA,
    PAGE,
    choice_query,
    datetime_query,
    pattern_query,
    read_page,
)
from control.api.schemas import Input, Output, parse_body
from control.api.state import api_state, sessions
from control.auditlog.query import (
    AuditFilter,
    as_dict,
    csv_header,
    csv_line,
    export_rows,
    filtered,
    jsonl_line,
    newest_first,
)
from control.auditlog.writer import MUTATING_METHODS, api_request_row
from control.db.session import run_transaction
from control.retention.job import Policy, check_number, erase_caller, load_policy, save_policy
from control.retention.job import apply_retention as apply_tenant_retention
from control.retention.purge import LiveStores
from control.retention.scheduler import live_stores

log = logging.getLogger(__name__)
bp = Blueprint("compliance", __name__, url_prefix=TENANT_PREFIX)

_TEXT: Final = re.compile(r"[A-Za-z0-9 _.:/{}<>*-]{1,200}")
_TEXT_MSG: Final = "letters, digits, spaces and _ . : / { } < > * - (at most 200)"
_VIA: Final = ("api", "agent", "platform", "system")
_FORMATS: Final = ("jsonl", "csv")
_FILTERS: Final = (
    QueryParam("action", {"type": "string", "maxLength": 200},
               "Exact action, or a prefix ending in '*' (e.g. 'POST *', 'erasure.*')."),
    QueryParam("actor", {"type": "string", "maxLength": 200},
               "e.g. token:<id>, agent:<id>, system:retention"),
    QueryParam("via", {"type": "string", "enum": list(_VIA)}),
    QueryParam("target_type", {"type": "string", "maxLength": 200}),
    QueryParam("target_id", {"type": "string", "maxLength": 200}),
    QueryParam("since", DATETIME_SCHEMA, "Rows at or after this instant."),
    QueryParam("until", DATETIME_SCHEMA, "Rows before this instant."),
)


class AuditEntry(Output):
    id: uuid.UUID
    created_at: str
    actor: str
    actor_role: str | None
    via: str
    source: str | None
    action: str
    target_type: str
    target_id: str | None
    details: dict[str, Any]


class AuditPage(Output):
    items: list[AuditEntry]
    next_offset: int | None


class RetentionSettings(Input):
    call_days: int | None = Field(default=None, ge=1, le=36_500,
                                  description="Days a call (rows, events, live state, recordings) is kept.")
    recording_days: int | None = Field(default=None, ge=1, le=36_500,
                                       description="Days a recording is kept (may be shorter than the call).")


class ErasureRequest(Input):
    phone_number: str = Field(min_length=8, max_length=16, description="The caller's number (E.164).")


class Certificates(BaseModel):
    certificates: list[dict[str, Any]]


# --- the audit hook -------------------------------------------------------------------------------


@bp.after_app_request
async def _audit_request(response: Response) -> Response:
    auth: AuthContext | None = g.get("auth")
    rule = request.url_rule
    if auth is None or request.method not in MUTATING_METHODS or rule is None or g.get("audited"):
        return response  # a route that wrote its own, more telling row (control.api.audit) needs no other
    row = api_request_row(auth.scope, token_id=auth.token_id, role=auth.role, method=request.method,
                          rule=rule.rule, prefix=TENANT_PREFIX, view_args=request.view_args or {},
                          status=response.status_code, remote_addr=request.remote_addr)

    async def write(session: AsyncSession) -> None:
        session.add(row)

    try:
        await run_transaction(sessions(), write, scope=auth.scope)
    except Exception:
        # The action itself has committed; a lost audit row is logged (with no request data) loudly.
        log.exception("audit row for %s %s could not be written", request.method, rule.rule)
    return response


# --- reading the audit log ------------------------------------------------------------------------


def _filter() -> AuditFilter:
    return AuditFilter(
        action=pattern_query("action", _TEXT, _TEXT_MSG), actor=pattern_query("actor", _TEXT, _TEXT_MSG),
        via=choice_query("via", _VIA), target_type=pattern_query("target_type", _TEXT, _TEXT_MSG),
        target_id=pattern_query("target_id", _TEXT, _TEXT_MSG), since=datetime_query("since"),
        until=datetime_query("until"))


@operation(bp, "GET", "/audit-log", summary="The tenant's audit log, newest first", response=AuditPage,
           query=(*PAGE, *_FILTERS))
@require("admin")
async def list_audit(tenant_id: uuid.UUID) -> Response:
    limit, offset = read_page()
    scope, f = current_auth().scope, _filter()

    async def work(session: AsyncSession) -> AuditPage:
        rows, next_offset = await fetch_page(session, newest_first(filtered(scope, f)), limit=limit,
                                             offset=offset)
        return AuditPage(items=[AuditEntry.model_validate(as_dict(r)) for r in rows], next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/audit-log/export", summary="Export the audit log as JSON lines or CSV",
           media_type="application/x-ndjson",
           query=(QueryParam("format", {"type": "string", "enum": list(_FORMATS), "default": "jsonl"}),
                  *_FILTERS))
@require("admin")
async def export_audit(tenant_id: uuid.UUID) -> Response:
    fmt = choice_query("format", _FORMATS) or "jsonl"
    scope, f, factory = current_auth().scope, _filter(), sessions()

    async def body() -> AsyncIterator[bytes]:
        if fmt == "csv":
            yield csv_header().encode()
        async for item in export_rows(factory, scope, f):
            yield (csv_line(item) if fmt == "csv" else jsonl_line(item)).encode()

    kind = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return Response(body(), status=200, content_type=kind, headers={
        "Content-Disposition": f'attachment; filename="audit-{tenant_id}.{fmt}"',
        "Cache-Control": "private, no-store"})


# --- retention and erasure ------------------------------------------------------------------------


@operation(bp, "GET", "/retention", summary="The tenant's retention settings", response=RetentionSettings)
@require("admin")
async def get_retention(tenant_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> Policy:
        return await load_policy(session, scope)

    policy = await run_transaction(sessions(), work, scope=scope)
    return json_response(RetentionSettings(call_days=policy.call_days, recording_days=policy.recording_days))


@operation(bp, "PUT", "/retention", summary="Set the tenant's retention (days; null keeps data)",
           body=RetentionSettings, response=RetentionSettings)
@require("admin")
async def put_retention(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(RetentionSettings)
    scope = current_auth().scope

    async def work(session: AsyncSession) -> Policy:
        return await save_policy(session, scope, Policy(spec.call_days, spec.recording_days))

    await run_transaction(sessions(), work, scope=scope)
    return json_response(spec)


async def _with_stores(action: Any) -> Any:
    """Run `action(stores)` with this cell's live stores (a NATS connection of its own, when set)."""
    settings = api_state().settings
    if not settings.nats_url:
        # Deleting the rows alone would strand the call's events and live state where no later run
        # could find them (the rows are how a run finds a call), so nothing is deleted.
        raise ApiProblem(503, "Service Unavailable", "This process has no event store configured; send "
                         "the request to the region's cell. Nothing was deleted.", slug="store-unavailable")
    try:
        nc = await nats.connect(settings.nats_url, connect_timeout=3, max_reconnect_attempts=0)
    except Exception as exc:
        raise ApiProblem(503, "Service Unavailable", "The region's event store is not reachable; "
                         "nothing was deleted. Try again.", slug="store-unavailable") from exc
    try:
        stores: LiveStores = live_stores(settings.region, nc.jetstream(), settings.object_store_root,
                                         settings.secrets_key)
        return await action(stores)
    finally:
        await nc.close()


@operation(bp, "POST", "/retention/run", summary="Apply the retention settings now",
           response=Certificates, errors=(503,),
           description="Deletes every expired call in every store and returns one deletion certificate "
                       "per batch (also kept in the audit log as `retention.purge`).")
@require("admin")
async def run_retention(tenant_id: uuid.UUID) -> Response:
    auth = current_auth()

    async def act(stores: LiveStores) -> list[dict[str, Any]]:
        return await apply_tenant_retention(sessions(), auth.scope, stores, actor=f"token:{auth.token_id}")

    return json_response(Certificates(certificates=await _with_stores(act)))


@operation(bp, "POST", "/erasures", summary="Erase one caller's calls by phone number", body=ErasureRequest,
           response=Certificates, errors=(503,), status=200,
           description="Hard-deletes every call whose caller had this number (rows, events, live state, "
                       "recordings) and returns the deletion certificate, kept in the audit log as "
                       "`erasure.purge`; neither names the number.")
@require("admin")
async def erase(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(ErasureRequest)
    auth = current_auth()
    try:
        number = check_number(spec.phone_number)
    except ValueError as exc:
        raise validation_problem([{"path": "body.phone_number", "message": str(exc),
                                   "code": "e164"}]) from None

    async def act(stores: LiveStores) -> dict[str, Any]:
        return await erase_caller(sessions(), auth.scope, stores, number, actor=f"token:{auth.token_id}")

    return json_response(Certificates(certificates=[await _with_stores(act)]))
