"""Tool records: what agents' `record` tools kept (screen results, reservations), per tenant and region.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

One row per write, unique per (region, tenant, idempotency key), the key being derived from the call,
the tool and its arguments (cells.contract.records), so a retried write stores once. Regional like every
tenant table: LIST-partitioned by region on PostgreSQL, REGIONAL BY ROW on CockroachDB.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control.db.migrations.regional_ddl import create_regional_table, drop_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_regional_table(
        "tool_records",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("arguments", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["agent_id", "region"], ["agents.id", "agents.region"],
                                name="fk_tool_records_agent_id_region_agents"),
        sa.UniqueConstraint("region", "tenant_id", "idempotency_key",
                            name="uq_tool_records_region_tenant_id_idempotency_key"),
    )
    op.create_index("ix_tool_records_tenant_kind", "tool_records",
                    ["region", "tenant_id", "kind", "created_at"])
    op.create_index("ix_tool_records_tenant_call", "tool_records", ["region", "tenant_id", "call_sid"])


def downgrade() -> None:
    op.drop_index("ix_tool_records_tenant_call", "tool_records")
    op.drop_index("ix_tool_records_tenant_kind", "tool_records")
    drop_table("tool_records")
