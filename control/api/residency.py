"""Residency at the HTTP edge: a request for a tenant homed in another region is redirected there,
never served. An API token names its tenant's home region, so the redirect needs no lookup (and
says nothing about which tenants exist)."""

from __future__ import annotations

from quart import request

from control.api.problems import ApiProblem
from control.api.state import api_state
from regions.residency import Allow, Redirect, check_residency


def enforce_residency(tenant_region: str) -> None:
    """Raise the redirect (307) or the refusal (421) for a request that belongs to another cell (its
    token's, which is its tenant's home region for every real token)."""
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
                         f"This request is served by the {decision.region.code} cell.",
                         slug="residency-redirect",
                         headers={"Location": decision.location}, home_region=decision.region.code)
    # 421 Misdirected Request: the request reached a server that will not produce a response for it.
    raise ApiProblem(421, "Tenant homed in another region", decision.reason, slug="residency-refused",
                     home_region=decision.region.code)
