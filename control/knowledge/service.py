"""The knowledge base of one cell: ingestion jobs and search, over the region's database.

`KnowledgeService` is what the API routes call; `TenantKnowledge` binds it to one tenant and agent and
is the `cells.contract.knowledge.KnowledgeSearch` a brain calls during a call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.contract.knowledge import KnowledgeAnswer
from cells.knowledge.chunker import Chunk, chunk_blocks
from cells.knowledge.embedder import Embedder, default_embedder
from cells.knowledge.extract import ExtractError, extract
from cells.knowledge.scoring import CANDIDATES, DEFAULT_TOP_K, answer_from, rerank
from control.db.models import KnowledgeChunk, KnowledgeDocument
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, unscoped
from control.knowledge import store
from control.knowledge.search import nearest_chunks
from control.knowledge.settings import KnowledgeSettings

log = logging.getLogger(__name__)
Sessions = Callable[[], async_sessionmaker[AsyncSession]]
REEMBED_BATCH = 256


class ChunkLimit(ExtractError):
    pass


def prepare(data: bytes, content_type: str, embedder: Embedder,
            max_chunks: int) -> tuple[list[Chunk], np.ndarray]:
    """Extract, chunk and embed one document (CPU work, run off the event loop)."""
    chunks = chunk_blocks(extract(data, content_type))
    if len(chunks) > max_chunks:
        raise ChunkLimit(f"the document makes {len(chunks)} chunks, more than the {max_chunks} allowed")
    return chunks, embedder.encode([c.embed_text for c in chunks])


class KnowledgeService:
    def __init__(self, settings: KnowledgeSettings, sessions: Sessions, region: str) -> None:
        self.settings = settings
        self.sessions = sessions
        self.region = region
        self._embedder: Embedder | None = settings.embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    async def ingest(self, scope: TenantScope, doc_id: uuid.UUID) -> None:
        """Run one queued document to ready or failed; never leaves it in processing."""
        claimed = await run_transaction(self.sessions(), lambda s: store.claim(s, scope, doc_id), scope=scope)
        if claimed is None:
            return
        try:
            chunks, vectors = await asyncio.to_thread(prepare, *claimed, self.embedder,
                                                      self.settings.max_chunks_per_document)
            await run_transaction(self.sessions(), lambda s: store.finish(
                s, scope, doc_id, chunks, vectors, self.embedder.model_id, self.settings.max_chunks),
                scope=scope)
        except (ExtractError, store.QuotaExceeded) as exc:
            await self._fail(scope, doc_id, str(exc))
        except Exception as exc:
            log.exception("knowledge job %s failed", doc_id)
            await self._fail(scope, doc_id, f"internal error while processing ({type(exc).__name__})")

    async def _fail(self, scope: TenantScope, doc_id: uuid.UUID, reason: str) -> None:
        await run_transaction(self.sessions(), lambda s: store.fail(s, scope, doc_id, reason), scope=scope)

    async def search(self, scope: TenantScope, question: str, *, agent_id: uuid.UUID | None = None,
                     top_k: int = DEFAULT_TOP_K, threshold: float | None = None) -> KnowledgeAnswer:
        started = time.perf_counter()
        query = (await asyncio.to_thread(self.embedder.encode, [question]))[0]
        nearest = await run_transaction(
            self.sessions(), lambda s: nearest_chunks(s, scope, query, max(top_k, CANDIDATES), agent_id),
            scope=scope)
        hits = rerank(question, nearest, top_k)
        limit = self.settings.threshold if threshold is None else threshold
        return answer_from(nearest, hits, limit, (time.perf_counter() - started) * 1000)

    async def pending_jobs(self) -> list[tuple[TenantScope, uuid.UUID]]:
        """The region's unfinished jobs, all set back to queued (a restart resumes what a crash cut)."""

        async def work(session: AsyncSession) -> list[tuple[TenantScope, uuid.UUID]]:
            await session.execute(unscoped(
                update(KnowledgeDocument)
                .where(KnowledgeDocument.region == self.region, KnowledgeDocument.status == "processing")
                .values(status="queued"), "resume the region's knowledge jobs after a restart"))
            rows = (await session.execute(unscoped(
                select(KnowledgeDocument.tenant_id, KnowledgeDocument.id)
                .where(KnowledgeDocument.region == self.region, KnowledgeDocument.status == "queued")
                .order_by(KnowledgeDocument.created_at), "list the region's queued knowledge jobs"))).all()
            return [(TenantScope(t, self.region), d) for t, d in rows]

        return await run_transaction(self.sessions(), work)

    async def reembed_stale(self) -> int:
        """Re-embed the region's chunks written by another model than the current one; the count."""
        model = self.embedder.model_id

        async def tenants(session: AsyncSession) -> list[uuid.UUID]:
            return list(await session.scalars(unscoped(
                select(KnowledgeChunk.tenant_id).distinct()
                .where(KnowledgeChunk.region == self.region, KnowledgeChunk.embedding_model != model),
                "find tenants whose knowledge needs re-embedding")))

        done = 0
        for tenant in await run_transaction(self.sessions(), tenants):
            scope = TenantScope(tenant, self.region)
            while True:
                batch = await run_transaction(
                    self.sessions(), lambda s, sc=scope: self._reembed_batch(s, sc, model), scope=scope)
                done += batch
                if batch < REEMBED_BATCH:
                    break
        return done

    async def _reembed_batch(self, session: AsyncSession, scope: TenantScope, model: str) -> int:
        rows = await store.stale_chunks(session, scope, model, REEMBED_BATCH)
        if not rows:
            return 0
        texts = [Chunk(r.seq, r.text, r.section, "text").embed_text for r in rows]
        vectors = await asyncio.to_thread(self.embedder.encode, texts)
        for row, vector in zip(rows, vectors, strict=True):
            row.embedding, row.embedding_model = vector.tolist(), model
        await session.flush()
        return len(rows)


class TenantKnowledge:
    """One tenant's (and agent's) knowledge as the brain-facing `KnowledgeSearch`."""

    def __init__(self, service: KnowledgeService, scope: TenantScope,
                 agent_id: uuid.UUID | None = None) -> None:
        self.service, self.scope, self.agent_id = service, scope, agent_id

    async def search(self, question: str, *, top_k: int = DEFAULT_TOP_K) -> KnowledgeAnswer:
        return await self.service.search(self.scope, question, agent_id=self.agent_id, top_k=top_k)
