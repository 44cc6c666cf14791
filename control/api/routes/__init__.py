"""Tenant-scoped routes; every URL starts with /v1/tenants/<tenant_id>, the residency and auth key."""

from control.api.routes.agents import bp as agents_bp
from control.api.routes.tenants import bp as tenants_bp
from control.api.routes.tokens import bp as tokens_bp

BLUEPRINTS = (tenants_bp, agents_bp, tokens_bp)

__all__ = ["BLUEPRINTS"]
