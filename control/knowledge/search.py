"""Retrieval from pgvector: the tenant's (and agent's) ready chunks nearest to a question's vector.

The HNSW index (cosine) is partitioned by region; the tenant and agent filters apply during the index
scan with pgvector's iterative scan, so a small tenant in a big region still gets its k nearest chunks
instead of an empty page of other tenants' neighbours.
"""

from __future__ import annotations

import uuid
from typing import Final

import numpy as np
from sqlalchemy import or_, text
from sqlalchemy.ext.asyncio import AsyncSession

from cells.contract.knowledge import KnowledgeHit
from control.db.models import KnowledgeChunk, KnowledgeDocument
from control.db.tenancy import TenantScope, scoped_select

EF_SEARCH: Final = 100


async def nearest_chunks(session: AsyncSession, scope: TenantScope, query: np.ndarray, k: int,
                         agent_id: uuid.UUID | None = None) -> list[KnowledgeHit]:
    """Top-k chunks by cosine similarity (1 - pgvector's cosine distance), best first."""
    if session.bind.dialect.name == "postgresql":
        # SET LOCAL: for this transaction only. Strict order keeps the exact best-first ranking.
        await session.execute(text(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}"))
        await session.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
    distance = KnowledgeChunk.embedding.cosine_distance(np.asarray(query, dtype=np.float32).tolist())
    stmt = (scoped_select(KnowledgeChunk, scope)
            .join(KnowledgeDocument, (KnowledgeDocument.id == KnowledgeChunk.document_id)
                  & (KnowledgeDocument.region == KnowledgeChunk.region))
            .where(KnowledgeDocument.status == "ready")
            .with_only_columns(KnowledgeChunk.text, KnowledgeChunk.section, KnowledgeChunk.seq,
                               KnowledgeChunk.document_id, KnowledgeDocument.title,
                               distance.label("distance"))
            .order_by(distance).limit(k))
    if agent_id is not None:
        # An agent reads its own documents and the tenant's shared ones (no agent).
        stmt = stmt.where(or_(KnowledgeDocument.agent_id == agent_id, KnowledgeDocument.agent_id.is_(None)))
    rows = (await session.execute(stmt)).all()
    return [KnowledgeHit(r.text, round(1.0 - float(r.distance), 6), str(r.document_id), r.title, r.section,
                         r.seq) for r in rows]
