"""Bodies of the knowledge routes: document uploads, their job status, and search."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from cells.knowledge.scoring import DEFAULT_TOP_K, MAX_TOP_K
from control.api.schemas import Input, Output

ContentType = Literal["text/plain", "text/markdown", "text/html", "application/pdf", "text/csv"]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class KnowledgeUpload(Input):
    """Exactly one source: `text` (a text type), `content_base64` (any type, PDF included) or `url`
    (fetched by the cell; its type comes from the response)."""

    title: Title
    agent_id: uuid.UUID | None = Field(default=None, description="None: shared by all the tenant's agents")
    content_type: ContentType | None = Field(default=None, description="Required with text or content_base64")
    text: str | None = None
    content_base64: str | None = None
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> KnowledgeUpload:
        given = [n for n in ("text", "content_base64", "url") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of text, content_base64 or url")
        if self.url is None and self.content_type is None:
            raise ValueError("content_type is required with text or content_base64")
        if self.text is not None and self.content_type == "application/pdf":
            raise ValueError("send a PDF as content_base64")
        return self


class KnowledgeDocumentOut(Output):
    id: uuid.UUID
    agent_id: uuid.UUID | None
    title: str
    source_uri: str | None
    content_type: str
    status: Literal["queued", "processing", "ready", "failed"]
    error: str | None
    content_hash: str
    size_bytes: int
    chunk_count: int
    embedding_model: str | None
    created_at: datetime
    updated_at: datetime


class KnowledgeDocumentList(Output):
    items: list[KnowledgeDocumentOut]
    next_offset: int | None


class KnowledgeSearchIn(Input):
    question: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
    agent_id: uuid.UUID | None = None
    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, le=MAX_TOP_K)
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0,
                                    description="Override the cell's threshold (benchmarks)")


class KnowledgeHitOut(Output):
    text: str
    score: float
    document_id: uuid.UUID
    document_title: str
    section: str
    seq: int


class KnowledgeSearchOut(Output):
    known: bool = Field(description="The best chunk scored at or above the threshold; if false the agent "
                                    "must say it does not know")
    threshold: float
    elapsed_ms: float
    hits: list[KnowledgeHitOut]
