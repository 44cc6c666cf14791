"""Webhook endpoints (Standard Webhooks) and their delivery log.

The signing secret is shown once, in the create response, and never again: not in reads, not in
idempotent replays, not in audit rows. The dispatcher (another module) signs with the stored secret,
writes one delivery row per (endpoint, event) and updates it on every attempt.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from quart import Blueprint, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control.api import audit
from control.api.auth import current_auth, require
from control.api.idempotency import idempotent_create
from control.api.netguard import UnsafeWebhookTarget, check_webhook_url, url_origin
from control.api.openapi import QueryParam, operation
from control.api.problems import ApiProblem, validation_problem
from control.api.routes.common import (
    TENANT_PREFIX,
    fetch_page,
    json_response,
    outcome_response,
    scoped_one,
)
from control.api.routes.params import PAGE, choice_query, not_found, read_page
from control.api.schemas import parse_body
from control.api.schemas_webhooks import (
    WebhookDeliveryList,
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
)
from control.api.state import api_state, sessions
from control.db.models import WebhookDelivery, WebhookEndpoint
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_delete, scoped_select

bp = Blueprint("webhooks", __name__, url_prefix=TENANT_PREFIX)

SECRET_PREFIX: Final = "whsec_"
# Every status the dispatcher writes (control.events.webhooks); any other value is a 422, whatever
# its spelling, rather than an empty page for some and an error for others.
DELIVERY_STATUSES: Final = ("pending", "retrying", "delivered", "failed")
_DELIVERY_FILTERS: Final = (
    QueryParam("status", {"type": "string", "enum": list(DELIVERY_STATUSES)}),
    *PAGE,
)


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes (192 bits)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def allow_private_webhooks() -> bool:
    """The cell's policy: loopback/private/plain-http targets only on dev stacks and in tests."""
    return bool(getattr(api_state().settings, "allow_private_webhooks", False))


def _checked_url(url: str) -> str:
    """`url` if this cell may POST to it, else a 422 naming the url field."""
    try:
        return check_webhook_url(url, allow_private=allow_private_webhooks())
    except UnsafeWebhookTarget as exc:
        raise validation_problem([{"path": "url", "message": str(exc), "code": "url_not_allowed"}]) from None


def _out(row: WebhookEndpoint) -> dict[str, Any]:
    return WebhookEndpointOut.model_validate(row).model_dump(mode="json")


async def _endpoint(session: AsyncSession, scope: TenantScope, endpoint_id: uuid.UUID,
                    lock: bool = False) -> WebhookEndpoint:
    return await scoped_one(session, WebhookEndpoint, scope, WebhookEndpoint.id == endpoint_id, lock=lock)


@operation(bp, "POST", "/webhook-endpoints", summary="Create a webhook endpoint (the secret is shown once)",
           status=201, body=WebhookEndpointCreate, response=WebhookEndpointCreated, idempotent_create=True)
@require("admin")
async def create_endpoint(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(WebhookEndpointCreate)
    _checked_url(spec.url)
    scope = current_auth().scope

    async def create(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        secret = new_signing_secret()
        row = scope.new(WebhookEndpoint, id=uuid.uuid4(), url=spec.url, signing_secret=secret,
                        event_types=list(spec.event_types), enabled=spec.enabled,
                        created_at=datetime.now(UTC))
        session.add(row)
        await session.flush()
        # Only the origin: the path or query of a webhook URL often carries the receiver's token.
        audit.record(session, "webhook_endpoint.create", "webhook_endpoint", row.id,
                     url=url_origin(spec.url), event_types=list(spec.event_types))
        return 201, {**_out(row), "signing_secret": secret}

    # The secret is not kept in the idempotency record: a replay shows the endpoint without it.
    outcome = await idempotent_create(scope, spec.model_dump(mode="json"), create, redact=("signing_secret",))
    return outcome_response(outcome,
                            location=f"/v1/tenants/{tenant_id}/webhook-endpoints/{outcome.body['id']}")


@operation(bp, "GET", "/webhook-endpoints", summary="List webhook endpoints", response=WebhookEndpointList,
           query=PAGE)
@require("viewer")
async def list_endpoints(tenant_id: uuid.UUID) -> Response:
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> WebhookEndpointList:
        stmt = scoped_select(WebhookEndpoint, scope).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return WebhookEndpointList(items=[WebhookEndpointOut.model_validate(r) for r in rows],
                                   next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/webhook-endpoints/<uuid:endpoint_id>", summary="Get a webhook endpoint",
           response=WebhookEndpointOut)
@require("viewer")
async def get_endpoint(tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _out(await _endpoint(session, scope, endpoint_id))

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "PATCH", "/webhook-endpoints/<uuid:endpoint_id>", summary="Update a webhook endpoint",
           body=WebhookEndpointUpdate, response=WebhookEndpointOut)
@require("admin")
async def update_endpoint(tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> Response:
    change = (await parse_body(WebhookEndpointUpdate)).model_dump(mode="json", exclude_unset=True)
    nulls = [name for name, value in change.items() if value is None]
    if nulls:
        raise ApiProblem(422, "Unprocessable content", f"{nulls[0]}: may not be null", slug="validation",
                         errors=[{"path": n, "message": "may not be null", "code": "null"} for n in nulls])
    if "url" in change:
        _checked_url(change["url"])
    audited = {**change, "url": url_origin(change["url"])} if "url" in change else change
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await _endpoint(session, scope, endpoint_id, lock=True)
        for name, value in change.items():
            setattr(row, name, value)
        audit.record(session, "webhook_endpoint.update", "webhook_endpoint", endpoint_id, changed=audited)
        await session.flush()
        return _out(row)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "DELETE", "/webhook-endpoints/<uuid:endpoint_id>",
           summary="Delete a webhook endpoint and its delivery log", status=204)
@require("admin")
async def delete_endpoint(tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> None:
        result = await session.execute(scoped_delete(WebhookEndpoint, scope)
                                       .where(WebhookEndpoint.id == endpoint_id))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise not_found()
        audit.record(session, "webhook_endpoint.delete", "webhook_endpoint", endpoint_id)

    await run_transaction(sessions(), work, scope=scope)
    return Response("", status=204)


@operation(bp, "GET", "/webhook-endpoints/<uuid:endpoint_id>/deliveries",
           summary="The endpoint's delivery log, newest first", response=WebhookDeliveryList,
           query=_DELIVERY_FILTERS)
@require("viewer")
async def list_deliveries(tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> Response:
    status = choice_query("status", DELIVERY_STATUSES)
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> WebhookDeliveryList:
        await _endpoint(session, scope, endpoint_id)
        stmt = scoped_select(WebhookDelivery, scope).where(WebhookDelivery.endpoint_id == endpoint_id)
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        stmt = stmt.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return WebhookDeliveryList(items=[WebhookDeliveryOut.model_validate(d) for d in rows],
                                   next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


def _check_retryable(row: WebhookDelivery, now: datetime) -> None:
    """Refuse (409) a retry that could send the delivery twice or that makes no sense.

    The dispatcher claims a due delivery by counting the attempt and moving next_attempt_at a lease
    ahead while the status stays pending/retrying, then sends outside any transaction. So a pending
    row due in the future is held by a dispatcher right now, and a retrying row may be too (a held
    one and one waiting for its backoff look the same); both are left alone. Only a failed delivery,
    or a pending one nobody holds, is reset.
    """
    def conflict(detail: str, slug: str) -> ApiProblem:
        return ApiProblem(409, "Conflict", detail, slug=slug, delivery_status=row.status)

    if row.status == "delivered":
        raise conflict("This delivery was already delivered.", "delivery-already-delivered")
    if row.status == "retrying":
        raise conflict("This delivery is being retried automatically; it may be in flight right now.",
                       "delivery-in-flight")
    if row.status == "pending":
        if row.next_attempt_at is not None and row.next_attempt_at > now:
            raise conflict("This delivery is being sent right now.", "delivery-in-flight")
        return
    if row.status != "failed":
        raise conflict(f"A {row.status} delivery cannot be retried.", "delivery-not-retryable")


@operation(bp, "POST", "/webhook-endpoints/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>/retry",
           summary="Deliver a failed delivery again as soon as possible", status=202,
           response=WebhookDeliveryOut, errors=(409,))
@require("operator")
async def retry_delivery(tenant_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> WebhookDeliveryOut:
        row = await scoped_one(session, WebhookDelivery, scope, WebhookDelivery.id == delivery_id,
                               WebhookDelivery.endpoint_id == endpoint_id, lock=True)
        # The database's clock, as the dispatcher's claim uses it (no skew between app hosts).
        now = await session.scalar(select(func.now()))
        _check_retryable(row, now)
        previous = row.status
        # The dispatcher picks up pending rows whose next attempt is due; attempts keep counting.
        row.status = "pending"
        row.next_attempt_at = now
        audit.record(session, "webhook_delivery.retry", "webhook_delivery", delivery_id,
                     endpoint_id=str(endpoint_id), previous_status=previous)
        await session.flush()
        return WebhookDeliveryOut.model_validate(row)

    return json_response(await run_transaction(sessions(), work, scope=scope), status=202)
