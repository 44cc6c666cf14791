"""Limits and switches of a cell's knowledge base."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cells.knowledge.scoring import DEFAULT_THRESHOLD


@dataclass(frozen=True)
class KnowledgeSettings:
    max_document_bytes: int = 5 * 1024 * 1024
    """Largest document accepted (an upload's decoded bytes or a fetched URL's body)."""
    max_documents: int = 200
    """Per-tenant quota of documents."""
    max_chunks: int = 20_000
    """Per-tenant quota of chunks over all documents; a document that would pass it fails."""
    max_chunks_per_document: int = 2_000
    fetch_timeout_s: float = 10.0
    max_redirects: int = 3
    allow_private_urls: bool = False
    """Let URL uploads reach loopback/private addresses (the operator's choice; tests, a closed LAN)."""
    threshold: float = DEFAULT_THRESHOLD
    embedder: Any = field(default=None, repr=False)
    """An `Embedder`; None is the shared MiniLM encoder (loaded on first use)."""

    def __post_init__(self) -> None:
        limits = (self.max_document_bytes, self.max_documents, self.max_chunks, self.max_chunks_per_document)
        if min(limits) < 1:
            raise ValueError("knowledge limits must be positive")
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError("the threshold is a cosine similarity, from -1 to 1")
