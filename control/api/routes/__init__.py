"""The API routes: tenant creation by the platform operator, then the tenant-scoped routes, whose URLs
start with /v1/tenants/<tenant_id>, the residency and auth key."""

from control.api.routes.agent_versions import bp as agent_versions_bp
from control.api.routes.agents import bp as agents_bp
from control.api.routes.calls import bp as calls_bp
from control.api.routes.compliance import bp as compliance_bp
from control.api.routes.consents import bp as consents_bp
from control.api.routes.knowledge import bp as knowledge_bp
from control.api.routes.numbers import bp as numbers_bp
from control.api.routes.outbound_calls import bp as outbound_calls_bp
from control.api.routes.platform import bp as platform_bp
from control.api.routes.records import bp as records_bp
from control.api.routes.tenants import bp as tenants_bp
from control.api.routes.tokens import bp as tokens_bp
from control.api.routes.usage import bp as usage_bp
from control.api.routes.users import bp as users_bp
from control.api.routes.webhooks import bp as webhooks_bp

BLUEPRINTS = (platform_bp, tenants_bp, agents_bp, agent_versions_bp, tokens_bp, users_bp, numbers_bp,
              calls_bp, outbound_calls_bp, consents_bp, webhooks_bp, usage_bp, knowledge_bp, compliance_bp,
              records_bp)

__all__ = ["BLUEPRINTS"]
