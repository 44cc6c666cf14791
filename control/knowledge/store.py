"""Knowledge rows in the tenant's home-region partition: documents (which are also ingestion jobs),
their chunks and vectors. Every statement is tenant scoped (control.db.tenancy).

Job life: `queue_document` writes the row `queued` with the upload's bytes; `claim` moves it to
`processing` in its own transaction; the CPU work (extract, chunk, embed) runs outside any transaction;
`finish` swaps the chunks in and marks it `ready` in one transaction, or `fail` records the reason. A
document is never half-written: its old chunks stay searchable until the new ones replace them all.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from cells.knowledge.chunker import Chunk
from control.db.models import KnowledgeChunk, KnowledgeDocument
from control.db.tenancy import TenantScope, scoped_delete, scoped_select, scoped_update

ACTIVE = ("queued", "processing")


class QuotaExceeded(Exception):
    """The tenant is at a knowledge quota; the message is safe to show."""


class DuplicateContent(Exception):
    """Another of the tenant's documents has exactly these bytes."""

    def __init__(self, document_id: uuid.UUID) -> None:
        super().__init__(str(document_id))
        self.document_id = document_id


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Upload:
    title: str
    content_type: str
    data: bytes
    agent_id: uuid.UUID | None = None
    source_uri: str | None = None


async def by_hash(session: AsyncSession, scope: TenantScope, digest: str) -> KnowledgeDocument | None:
    return await session.scalar(scoped_select(KnowledgeDocument, scope)
                                .where(KnowledgeDocument.content_hash == digest))


async def queue_document(session: AsyncSession, scope: TenantScope, upload: Upload,
                         max_documents: int) -> tuple[KnowledgeDocument, bool]:
    """(document, created). The same bytes again return the existing document (idempotent)."""
    digest = content_hash(upload.data)
    existing = await by_hash(session, scope, digest)
    if existing is not None:
        return existing, False
    count = await session.scalar(scoped_select(KnowledgeDocument, scope)
                                 .with_only_columns(func.count(KnowledgeDocument.id)))
    if (count or 0) >= max_documents:
        raise QuotaExceeded(f"the tenant has {count} knowledge documents, the most allowed; "
                            "delete some first")
    now = datetime.now(UTC)
    doc = scope.new(KnowledgeDocument, id=uuid.uuid4(), agent_id=upload.agent_id, title=upload.title,
                    source_uri=upload.source_uri, content_type=upload.content_type, status="queued",
                    content_hash=digest, size_bytes=len(upload.data), chunk_count=0, content=upload.data,
                    created_at=now, updated_at=now)
    session.add(doc)
    await session.flush()
    return doc, True


async def requeue_document(session: AsyncSession, scope: TenantScope, doc: KnowledgeDocument,
                           upload: Upload) -> None:
    """Replace a document's content: it is queued again; its current chunks serve until the new ones
    are ready."""
    digest = content_hash(upload.data)
    other = await by_hash(session, scope, digest)
    if other is not None and other.id != doc.id:
        raise DuplicateContent(other.id)
    doc.title, doc.content_type, doc.source_uri = upload.title, upload.content_type, upload.source_uri
    doc.agent_id = upload.agent_id
    doc.content, doc.content_hash, doc.size_bytes = upload.data, digest, len(upload.data)
    doc.status, doc.error, doc.updated_at = "queued", None, datetime.now(UTC)
    await session.flush()


async def claim(session: AsyncSession, scope: TenantScope, doc_id: uuid.UUID) -> tuple[bytes, str] | None:
    """Move a queued document to processing; its (content, content type), or None if not queued."""
    row = (await session.execute(
        scoped_update(KnowledgeDocument, scope)
        .where(KnowledgeDocument.id == doc_id, KnowledgeDocument.status == "queued")
        .values(status="processing", updated_at=func.now())
        .returning(KnowledgeDocument.content, KnowledgeDocument.content_type))).first()
    if row is None or row[0] is None:
        return None
    return bytes(row[0]), str(row[1])


async def finish(session: AsyncSession, scope: TenantScope, doc_id: uuid.UUID, chunks: list[Chunk],
                 vectors: np.ndarray, model_id: str, max_chunks: int) -> None:
    """Swap the document's chunks for `chunks` and mark it ready, or raise QuotaExceeded."""
    doc = await session.scalar(scoped_select(KnowledgeDocument, scope)
                               .where(KnowledgeDocument.id == doc_id).with_for_update())
    if doc is None or doc.status != "processing":
        return  # deleted or replaced meanwhile: its new job will do the work
    others = await session.scalar(scoped_select(KnowledgeChunk, scope)
                                  .where(KnowledgeChunk.document_id != doc_id)
                                  .with_only_columns(func.count(KnowledgeChunk.id)))
    if (others or 0) + len(chunks) > max_chunks:
        raise QuotaExceeded(f"the document's {len(chunks)} chunks would pass the tenant's quota of "
                            f"{max_chunks} chunks")
    await session.execute(scoped_delete(KnowledgeChunk, scope).where(KnowledgeChunk.document_id == doc_id))
    session.add_all(scope.new(KnowledgeChunk, id=uuid.uuid4(), document_id=doc_id, seq=c.seq, text=c.text,
                              section=c.section, embedding=vectors[i].tolist(), embedding_model=model_id)
                    for i, c in enumerate(chunks))
    doc.status, doc.error, doc.content = "ready", None, None
    doc.chunk_count, doc.embedding_model, doc.updated_at = len(chunks), model_id, datetime.now(UTC)
    await session.flush()


async def fail(session: AsyncSession, scope: TenantScope, doc_id: uuid.UUID, reason: str) -> None:
    await session.execute(
        scoped_update(KnowledgeDocument, scope)
        .where(KnowledgeDocument.id == doc_id, KnowledgeDocument.status.in_(ACTIVE))
        .values(status="failed", error=reason[:500], content=None, updated_at=func.now()))


async def delete_document(session: AsyncSession, scope: TenantScope, doc_id: uuid.UUID) -> bool:
    """Hard delete: the chunks and their vectors, then the document. False if there was none."""
    await session.execute(scoped_delete(KnowledgeChunk, scope).where(KnowledgeChunk.document_id == doc_id))
    result = await session.execute(scoped_delete(KnowledgeDocument, scope)
                                   .where(KnowledgeDocument.id == doc_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def stale_chunks(session: AsyncSession, scope: TenantScope, model_id: str,
                       limit: int) -> list[KnowledgeChunk]:
    return list(await session.scalars(scoped_select(KnowledgeChunk, scope)
                                      .where(KnowledgeChunk.embedding_model != model_id)
                                      .order_by(KnowledgeChunk.id).limit(limit)))


