"""Published agent versions, the eval runs that gate them, and the version each call runs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

`agent_versions` holds immutable snapshots of an agent's behaviour (POST .../agents/{id}/versions);
`agents.published_version` names the newest. `agent_eval_runs` records gate verdicts per configuration
hash; changing providers or publishing needs a passing one (or an owner's audited override).
`calls.agent_version` records which version a call ran. Plain tables and columns: the same DDL runs on
PostgreSQL (partitioned by region) and CockroachDB (REGIONAL BY ROW), through create_regional_table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from control.db.migrations.regional_ddl import create_regional_table, drop_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _agent_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["agent_id", "region"], ["agents.id", "agents.region"],
                                   name=f"fk_{table}_agent_id_region_agents", ondelete="CASCADE")


def upgrade() -> None:
    op.add_column("agents", sa.Column("published_version", sa.Integer(), nullable=True))
    op.add_column("calls", sa.Column("agent_version", sa.Integer(), nullable=True))
    create_regional_table(
        "agent_versions",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", JSONB(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("gate", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        _agent_fk("agent_versions"),
        sa.UniqueConstraint("region", "tenant_id", "agent_id", "version",
                            name="uq_agent_versions_region_tenant_id_agent_id_version"),
        sa.CheckConstraint("version >= 1", name=op.f("ck_agent_versions_version")),
    )
    create_regional_table(
        "agent_eval_runs",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("verdict", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        _agent_fk("agent_eval_runs"),
    )
    op.create_index("ix_agent_eval_runs_config", "agent_eval_runs",
                    ["region", "tenant_id", "agent_id", "config_hash"])


def downgrade() -> None:
    op.drop_index("ix_agent_eval_runs_config", "agent_eval_runs")
    drop_table("agent_eval_runs")
    drop_table("agent_versions")
    op.drop_column("calls", "agent_version")
    op.drop_column("agents", "published_version")
