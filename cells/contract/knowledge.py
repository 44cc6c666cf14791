"""What a brain asks the knowledge base during a call, and what it gets back.

The brain calls `KnowledgeSearch.search(question)` for a caller's turn. The answer says whether the
knowledge covers the question (`known`: the best chunk scored at or above the threshold); when it does
not, the brain says it does not know and offers to take a message or transfer, and never guesses.
The hits carry their source (document title and section) so an answer can be traced.

Transport: the control plane, which owns the tenant's knowledge in its home region, serves
`knowledge_search_subject(region)` over NATS request/reply with `KnowledgeQuery` / `KnowledgeAnswer`
JSON, the same scoring as `POST /v1/tenants/{t}/knowledge/search`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


def knowledge_search_subject(region: str) -> str:
    return f"{region}.knowledge.search"


@dataclass(frozen=True)
class KnowledgeHit:
    text: str
    score: float  # cosine similarity of the question and the chunk, in [-1, 1]
    document_id: str
    document_title: str
    section: str = ""
    seq: int = 0


@dataclass(frozen=True)
class KnowledgeQuery:
    tenant_id: str
    question: str
    agent_id: str | None = None
    top_k: int = 3


@dataclass(frozen=True)
class KnowledgeAnswer:
    known: bool
    threshold: float
    hits: list[KnowledgeHit] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def best(self) -> KnowledgeHit | None:
        return self.hits[0] if self.known and self.hits else None

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "threshold": self.threshold, "elapsed_ms": self.elapsed_ms,
                "hits": [asdict(h) for h in self.hits]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KnowledgeAnswer:
        return cls(bool(data["known"]), float(data["threshold"]),
                   [KnowledgeHit(**h) for h in data.get("hits", [])], float(data.get("elapsed_ms", 0.0)))


class KnowledgeSearch(Protocol):
    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        """The chunks that best answer `question` for this call's tenant and agent."""
        ...
