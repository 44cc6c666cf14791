"""Residency at the HTTP edge: a tenant homed in another region is redirected there, never served.

The tenant directory is global (DESIGN.md: it holds no personal data), so any cell can tell where a
tenant lives without touching that tenant's regional rows.
"""

from __future__ import annotations

import uuid

from quart import request
from sqlalchemy import select

from control.api.problems import ApiProblem
from control.api.state import api_state, sessions
from control.db.models import Tenant
from regions.residency import Allow, Redirect, check_residency


async def tenant_home(tenant_id: uuid.UUID) -> str | None:
    async with sessions()() as session:
        return await session.scalar(select(Tenant.home_region).where(Tenant.id == tenant_id))


def enforce_residency(tenant_region: str) -> None:
    """Raise the redirect (307) or the refusal (421) for a tenant homed outside this cell."""
    settings = api_state().settings
    # The raw path and query as the client sent them, so the home cell sees the same request.
    path = request.path
    query = request.query_string.decode("ascii", "replace")
    decision = check_residency(settings.region, tenant_region, settings.cells, path=path, query=query,
                               redirect=settings.redirect_cross_region)
    if isinstance(decision, Allow):
        return
    if isinstance(decision, Redirect):
        raise ApiProblem(decision.status, "Tenant homed in another region",
                         f"This tenant is served by the {decision.region.code} cell.",
                         slug="residency-redirect",
                         headers={"Location": decision.location}, home_region=decision.region.code)
    # 421 Misdirected Request: the request reached a server that will not produce a response for it.
    raise ApiProblem(421, "Tenant homed in another region", decision.reason, slug="residency-refused",
                     home_region=decision.region.code)
