"""Knowledge ingestion: document job status, content hash, chunk sections and the embedding model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

A document row is also its ingestion job: `status` queued -> processing -> ready | failed (with
`error`). The upload's bytes stay in `content` until the job ends, so a cell that restarts mid-job
picks it up again instead of leaving it in processing. `content_hash` makes uploads idempotent per
tenant. Chunks record the section they came from and the model that embedded them, so a model change
can find and re-embed them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_STATUSES = "status IN ('queued', 'processing', 'ready', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("knowledge_documents") as t:
        t.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="queued"))
        t.add_column(sa.Column("error", sa.Text(), nullable=True))
        t.add_column(sa.Column("content_hash", sa.String(64), nullable=False, server_default=""))
        t.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        t.add_column(sa.Column("chunk_count", sa.Integer(), nullable=False, server_default="0"))
        t.add_column(sa.Column("embedding_model", sa.String(100), nullable=True))
        t.add_column(sa.Column("content", sa.LargeBinary(), nullable=True))
        t.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                               nullable=False))
    op.create_check_constraint(op.f("ck_knowledge_documents_status"), "knowledge_documents", _STATUSES)
    op.create_unique_constraint("uq_knowledge_documents_region_tenant_id_content_hash", "knowledge_documents",
                                ["region", "tenant_id", "content_hash"])
    op.create_index("ix_knowledge_documents_status", "knowledge_documents", ["region", "status"])
    with op.batch_alter_table("knowledge_chunks") as t:
        t.add_column(sa.Column("section", sa.Text(), nullable=False, server_default=""))
        t.add_column(sa.Column("embedding_model", sa.String(100), nullable=False, server_default=""))
    op.create_index("ix_knowledge_chunks_tenant_document", "knowledge_chunks",
                    ["region", "tenant_id", "document_id"])


def downgrade() -> None:
    op.drop_index("ix_knowledge_chunks_tenant_document", "knowledge_chunks")
    with op.batch_alter_table("knowledge_chunks") as t:
        t.drop_column("embedding_model")
        t.drop_column("section")
    op.drop_index("ix_knowledge_documents_status", "knowledge_documents")
    op.drop_constraint("uq_knowledge_documents_region_tenant_id_content_hash", "knowledge_documents")
    op.drop_constraint(op.f("ck_knowledge_documents_status"), "knowledge_documents")
    with op.batch_alter_table("knowledge_documents") as t:
        for column in ("updated_at", "content", "embedding_model", "chunk_count", "size_bytes",
                       "content_hash", "error", "status"):
            t.drop_column(column)
