"""Audit log made append-only and richer; per-tenant retention policies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

The audit log gains who acted in which role (`actor_role`), through which channel (`via`: api,
agent, platform, system) and from where (`source`: a network prefix, never a full address). A
trigger refuses every UPDATE and DELETE of its rows, on PostgreSQL and on CockroachDB (row triggers
with a PL/pgSQL function, v24.3 and later); PostgreSQL also refuses TRUNCATE (CockroachDB has no
statement triggers). A superuser can still drop the trigger: this guards against the application and
its mistakes, not against the database's owner.

`retention_policies` holds one row per tenant: how many days calls (rows, events, recordings, live
state) and recordings alone are kept; NULL keeps them until deleted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control.db.migrations.regional_ddl import POSTGRESQL, create_regional_table, dialect, drop_table
from control.db.topology import REGIONS

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_FUNCTION = "audit_log_append_only"
# One line each: the offline renderer splits statements at a ';' that ends a line.
_CREATE_FUNCTION = (
    f"CREATE FUNCTION {_FUNCTION}() RETURNS TRIGGER LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP; END $$"
)


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as t:
        t.add_column(sa.Column("actor_role", sa.String(16), nullable=True))
        t.add_column(sa.Column("via", sa.String(16), nullable=False, server_default="api"))
        t.add_column(sa.Column("source", sa.String(64), nullable=True))
    op.create_index("ix_audit_log_tenant_action", "audit_log", ["region", "tenant_id", "action"])
    create_regional_table(
        "retention_policies",
        sa.Column("call_days", sa.Integer(), nullable=True),
        sa.Column("recording_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("region", "tenant_id", name="uq_retention_policies_region_tenant_id"),
        sa.CheckConstraint("call_days IS NULL OR call_days >= 1",
                           name=op.f("ck_retention_policies_call_days")),
        sa.CheckConstraint("recording_days IS NULL OR recording_days >= 1",
                           name=op.f("ck_retention_policies_recording_days")),
    )
    op.execute(_CREATE_FUNCTION)
    # On a PostgreSQL partitioned table a row trigger is cloned to every partition, present and future.
    op.execute(f"CREATE TRIGGER {_FUNCTION} BEFORE UPDATE OR DELETE ON audit_log "
               f"FOR EACH ROW EXECUTE FUNCTION {_FUNCTION}()")
    if dialect() == POSTGRESQL:
        # Statement triggers are not cloned: the parent and each partition get their own.
        for table in ("audit_log", *(f"audit_log_{r}" for r in REGIONS)):
            op.execute(f"CREATE TRIGGER {_FUNCTION}_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()")


def downgrade() -> None:
    if dialect() == POSTGRESQL:
        for table in ("audit_log", *(f"audit_log_{r}" for r in REGIONS)):
            op.execute(f"DROP TRIGGER {_FUNCTION}_truncate ON {table}")
    op.execute(f"DROP TRIGGER {_FUNCTION} ON audit_log")
    op.execute(f"DROP FUNCTION {_FUNCTION}()")
    drop_table("retention_policies")
    op.drop_index("ix_audit_log_tenant_action", "audit_log")
    with op.batch_alter_table("audit_log") as t:
        for column in ("source", "via", "actor_role"):
            t.drop_column(column)
