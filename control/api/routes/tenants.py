"""The caller's own tenant: read it, rename it. Creation is an operator command (auth.bootstrap_tenant)."""

from __future__ import annotations

import uuid

from quart import Blueprint, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import require
from control.api.openapi import operation
from control.api.problems import ApiProblem
from control.api.routes.common import TENANT_PREFIX, json_response
from control.api.schemas import TenantOut, TenantUpdate, parse_body
from control.api.state import sessions
from control.db.models import Tenant
from control.db.session import run_transaction

bp = Blueprint("tenants", __name__, url_prefix=TENANT_PREFIX)


async def _load(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.id == tenant_id))
    if tenant is None:  # deleted between authentication and now
        raise ApiProblem(404, "Not Found", "No such resource.", slug="not-found")
    return tenant


@operation(bp, "GET", "", summary="Get the tenant", response=TenantOut)
@require("viewer")
async def get_tenant(tenant_id: uuid.UUID) -> Response:
    async def work(session: AsyncSession) -> TenantOut:
        return TenantOut.model_validate(await _load(session, tenant_id))

    return json_response(await run_transaction(sessions(), work))


@operation(bp, "PATCH", "", summary="Rename the tenant (its home region is fixed)", body=TenantUpdate,
           response=TenantOut)
@require("owner")
async def update_tenant(tenant_id: uuid.UUID) -> Response:
    change = await parse_body(TenantUpdate)

    async def work(session: AsyncSession) -> TenantOut:
        tenant = await _load(session, tenant_id)
        tenant.name = change.name
        return TenantOut.model_validate(tenant)

    return json_response(await run_transaction(sessions(), work))
