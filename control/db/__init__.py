"""The control-plane data layer: models, migrations, sessions and tenant scoping.

Global directory tables (tenants, phone numbers, plans) are readable from every region; every other
table is regional and carries `tenant_id` and `region` (the tenant's home region). PostgreSQL
partitions regional tables by region; CockroachDB homes their rows by it (REGIONAL BY ROW).
"""

from control.db.session import create_engine, normalize_url, run_transaction, session_factory, sqlstate_of
from control.db.tenancy import (
    ScopeViolation,
    TenantScope,
    UnscopedQueryError,
    scoped_delete,
    scoped_select,
    scoped_update,
    tenant_session,
    unscoped,
)
from control.db.topology import REGIONS

__all__ = [
    "REGIONS", "ScopeViolation", "TenantScope", "UnscopedQueryError", "create_engine", "normalize_url",
    "run_transaction", "scoped_delete", "scoped_select", "scoped_update", "session_factory", "sqlstate_of",
    "tenant_session", "unscoped",
]
