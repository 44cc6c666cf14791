"""Tenant creation by the platform operator: `POST /v1/tenants` with the platform token.

The tenant's home region is fixed here for its whole life. A cell creates only tenants of its own
region and redirects (307) a request for another region to that cell, so even a tenant's first rows
(its owner token) are written by its home cell. Idempotency: with an `Idempotency-Key` the tenant id
is derived from the key, so a retried request finds the tenant it created (the owner token is shown
only by the first response) instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Final

from quart import Blueprint, Response, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import bootstrap_tenant
from control.api.idempotency import REPLAY_HEADER, request_key
from control.api.openapi import operation
from control.api.problems import ApiProblem
from control.api.residency import enforce_residency
from control.api.routes.common import json_response
from control.api.schemas import TenantCreate, TenantCreated, TenantOut, parse_body
from control.api.state import api_state, sessions
from control.db.models import AuditLog, Tenant
from control.db.session import run_transaction
from control.db.tenancy import TenantScope

bp = Blueprint("platform", __name__, url_prefix="/v1")

_KEY_NAMESPACE: Final = uuid.UUID("9b1f0c52-3c1e-4f57-8d0e-6d1b2a7f4e20")


def _require_platform_token() -> None:
    expected = api_state().settings.platform_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Digests of equal length, so the comparison's time says nothing about the secret.
    ok = (expected is not None and scheme.lower() == "bearer" and
          hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                              hashlib.sha256(expected.encode()).digest()))
    if not ok:
        raise ApiProblem(401, "Unauthorized", "Creating a tenant needs the platform operator's token.",
                         slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="autospeak"'})


@operation(bp, "POST", "/tenants", summary="Create a tenant and its first owner token (platform operator)",
           status=201, body=TenantCreate, response=TenantCreated, idempotent_create=True)
async def create_tenant() -> Response:
    _require_platform_token()
    spec = await parse_body(TenantCreate)
    if spec.home_region != api_state().settings.region:
        enforce_residency(spec.home_region)
    key = request_key()
    tenant_id = uuid.uuid5(_KEY_NAMESPACE, key) if key else uuid.uuid4()

    async def work(session: AsyncSession) -> tuple[TenantCreated, bool]:
        existing = await session.get(Tenant, tenant_id)
        if existing is not None:
            same = (existing.name, existing.home_region, existing.plan) == (spec.name, spec.home_region,
                                                                             spec.plan)
            if not same:
                raise ApiProblem(422, "Unprocessable content",
                                 "This Idempotency-Key was used with a different request; use a new key.",
                                 slug="idempotency-key-reused")
            return TenantCreated(tenant=TenantOut.model_validate(existing), owner_token=None), True
        tenant, token = await bootstrap_tenant(session, spec.name, spec.home_region, plan=spec.plan,
                                               tenant_id=tenant_id)
        session.add(TenantScope(tenant.id, tenant.home_region).new(
            AuditLog, actor="platform", via="platform", action="tenant.create", target_type="tenant",
            target_id=str(tenant.id), details={"home_region": tenant.home_region, "plan": tenant.plan},
            created_at=datetime.now(UTC)))
        return TenantCreated(tenant=TenantOut.model_validate(tenant), owner_token=token), False

    try:
        out, replayed = await run_transaction(sessions(), work)
    except IntegrityError:  # a concurrent request with the same key created it first: replay that
        out, replayed = await run_transaction(sessions(), work)
    headers = {"Location": f"/v1/tenants/{out.tenant.id}"}
    if replayed:
        headers[REPLAY_HEADER] = "true"
    return json_response(out, 201, headers)
