"""What a brain asks the knowledge base during a call, and what it gets back.

The brain calls `KnowledgeSearch.search(question)` for a caller's turn. The answer says whether the
knowledge covers the question (`known`: the best chunk scored at or above the threshold); when it does
not, the brain says it does not know and offers to take a message or transfer, and never guesses.
The hits carry their source (document title and section) so an answer can be traced.

Transport: the control plane, which owns the tenant's knowledge in its home region, serves
`knowledge_search_subject(region)` over NATS request/reply (queue group `knowledge`) with
`KnowledgeQuery` / `KnowledgeAnswer` JSON, the same scoring as `POST /v1/tenants/{t}/knowledge/search`.
Workers stay without database access. `NatsKnowledgeSearch` is the worker's side: within its latency
budget it returns the answer, and past it (or on any failure) an answer that is not `known`, so the
brain says it does not know rather than guess or stall the turn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol

from nats.aio.client import Client

KNOWLEDGE_QUEUE: Final = "knowledge"
LATENCY_BUDGET_S: Final = 0.3
"""What a turn may spend on retrieval: question embedding (~10-20 ms on a free core), the pgvector
query (a few ms) and the NATS round trip. Past it the turn goes on without the knowledge."""


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
    error: str | None = None  # the search did not run (timeout, no responder, bad request)

    @property
    def best(self) -> KnowledgeHit | None:
        return self.hits[0] if self.known and self.hits else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"known": self.known, "threshold": self.threshold,
                               "elapsed_ms": self.elapsed_ms, "hits": [asdict(h) for h in self.hits]}
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KnowledgeAnswer:
        return cls(bool(data["known"]), float(data["threshold"]),
                   [KnowledgeHit(**h) for h in data.get("hits", [])], float(data.get("elapsed_ms", 0.0)),
                   data.get("error"))

    @classmethod
    def unavailable(cls, reason: str, elapsed_ms: float = 0.0) -> KnowledgeAnswer:
        return cls(False, 1.0, [], round(elapsed_ms, 3), reason)


class KnowledgeSearch(Protocol):
    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        """The chunks that best answer `question` for this call's tenant and agent."""
        ...


class NatsKnowledgeSearch:
    """The worker's `KnowledgeSearch` for one call: its tenant's (and agent's) knowledge over NATS."""

    def __init__(self, nc: Client, region: str, tenant_id: str, agent_id: str | None = None, *,
                 budget_s: float = LATENCY_BUDGET_S) -> None:
        self.nc, self.subject = nc, knowledge_search_subject(region)
        self.tenant_id, self.agent_id, self.budget_s = tenant_id, agent_id, budget_s

    @classmethod
    def for_agent(cls, nc: Client | None, region: str, spec: Mapping[str, Any]) -> NatsKnowledgeSearch | None:
        """The search of an agent (the control plane's agent record: `id`, `tenant_id`); None without
        a connection or ids."""
        if nc is None or not spec.get("tenant_id") or not spec.get("id"):
            return None
        return cls(nc, region, str(spec["tenant_id"]), str(spec["id"]))

    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        query = KnowledgeQuery(self.tenant_id, question, self.agent_id, top_k)
        started = time.perf_counter()
        try:
            body = json.dumps(asdict(query)).encode()
            msg = await self.nc.request(self.subject, body, timeout=self.budget_s)
            return KnowledgeAnswer.from_json(json.loads(msg.data))
        except Exception as exc:  # timeout, no responders, a malformed reply: not known, never a guess
            return KnowledgeAnswer.unavailable(type(exc).__name__, (time.perf_counter() - started) * 1000)
