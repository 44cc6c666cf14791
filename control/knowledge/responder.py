"""The control plane's side of `cells.contract.knowledge`: answers the region's workers' knowledge
searches over NATS, with the same service (and so the same scoring and tenant scoping) as the API.

A query names its tenant; the search runs in that tenant's scope in this cell's region, so it can only
ever read that tenant's rows here (a tenant homed elsewhere has none). Bad queries get an answer that
is not `known`, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from cells.contract.knowledge import KNOWLEDGE_QUEUE, KnowledgeAnswer, knowledge_search_subject
from cells.knowledge.scoring import MAX_TOP_K
from control.db.tenancy import TenantScope
from control.knowledge.service import KnowledgeService

log = logging.getLogger(__name__)
MAX_QUESTION_CHARS = 1000


class QueryError(ValueError):
    pass


def _parse(data: bytes) -> tuple[uuid.UUID, str, uuid.UUID | None, int]:
    try:
        doc: Any = json.loads(data)
        tenant = uuid.UUID(str(doc["tenant_id"]))
        agent = uuid.UUID(str(doc["agent_id"])) if doc.get("agent_id") else None
        question, top_k = doc["question"], doc.get("top_k", 3)
    except (ValueError, KeyError, TypeError):
        raise QueryError("malformed query") from None
    if not isinstance(question, str) or not question.strip() or len(question) > MAX_QUESTION_CHARS:
        raise QueryError(f"the question must be 1 to {MAX_QUESTION_CHARS} characters")
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise QueryError(f"top_k must be 1 to {MAX_TOP_K}")
    return tenant, question.strip(), agent, top_k


class KnowledgeResponder:
    def __init__(self, nc: Client, service: KnowledgeService) -> None:
        self.nc, self.service = nc, service
        self.sub: Subscription | None = None
        self._warming: asyncio.Task[None] | None = None

    async def start(self) -> None:
        subject = knowledge_search_subject(self.service.region)
        self.sub = await self.nc.subscribe(subject, queue=KNOWLEDGE_QUEUE, cb=self._handle)
        # The encoder loads in the background now, not in a caller's first question: loading takes longer
        # than the workers' answer budget (cells.contract.knowledge.LATENCY_BUDGET_S).
        self._warming = asyncio.create_task(self._warm_up())

    async def _warm_up(self) -> None:
        try:
            await asyncio.to_thread(self.service.embedder.encode, ["warm up"])
        except Exception:  # no model installed: the searches will say so, each with its reason
            log.warning("knowledge: the embedding model could not be loaded", exc_info=True)

    async def stop(self) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()
            self.sub = None
        if self._warming is not None:  # a thread cannot be cancelled: let the load finish
            await self._warming
            self._warming = None

    async def _handle(self, msg: Msg) -> None:
        try:
            tenant, question, agent, top_k = _parse(msg.data)
            answer = await self.service.search(TenantScope(tenant, self.service.region), question,
                                               agent_id=agent, top_k=top_k)
        except QueryError as exc:
            answer = KnowledgeAnswer.unavailable(str(exc))
        except Exception as exc:
            log.exception("knowledge search failed")
            answer = KnowledgeAnswer.unavailable(f"search failed ({type(exc).__name__})")
        if msg.reply:
            await msg.respond(json.dumps(answer.to_json()).encode())
