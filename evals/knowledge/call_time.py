"""What knowledge costs a call: the embedded worker's index load at start, and each caller turn's
retrieval (question embedding + search) and whole answer (the answer module: thread hop, search,
threshold, phrasing), against the answer budget.

Measured with the code the worker runs (cells.knowledge.local, cells.dialogue.knowledge_answer) on the
demo agents' files and question sets; timings are wall clock on this machine, one thread for BLAS.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cells.dialogue.knowledge_answer import ANSWER_BUDGET_S, answer_question
from cells.knowledge.embedder import Embedder
from cells.knowledge.local import LocalKnowledgeSearch
from cells.knowledge.scoring import CANDIDATES, rerank


@dataclass
class CallTime:
    chunks: int
    load_ms: float  # cut + embed every chunk (no vector cache)
    cached_load_ms: float  # cut + read the cached vectors
    embed_ms: list[float]  # per question: the question's embedding
    search_ms: list[float]  # per question: cosine top candidates + BM25 re-ranking
    answer_ms: list[float]  # per question: the answer module end to end (as a turn pays it)

    def over_budget(self) -> int:
        return sum(ms > ANSWER_BUDGET_S * 1000 for ms in self.answer_ms)


def measure(files: list[Path], questions: list[str], embedder: Embedder) -> CallTime:
    with tempfile.TemporaryDirectory() as cache:
        cold = LocalKnowledgeSearch(files, embedder=embedder, cache_dir=Path(cache))
        load = cold.load()
        warm = LocalKnowledgeSearch(files, embedder=embedder, cache_dir=Path(cache))
        cached = warm.load()
    assert warm.index is not None
    embed_ms, search_ms = [], []
    for q in questions:
        t0 = time.perf_counter()
        vector = embedder.encode([q])[0]
        t1 = time.perf_counter()
        rerank(q, warm.index.top(vector, CANDIDATES), 3)
        t2 = time.perf_counter()
        embed_ms.append((t1 - t0) * 1000)
        search_ms.append((t2 - t1) * 1000)

    async def answers() -> list[float]:
        out = []
        for q in questions:
            t0 = time.perf_counter()
            await answer_question(warm, q, budget_s=60.0)  # the real cost, not cut at the budget
            out.append((time.perf_counter() - t0) * 1000)
        return out

    return CallTime(load.chunks, load.load_ms, cached.load_ms, embed_ms, search_ms, asyncio.run(answers()))


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def lines(agent: str, ct: CallTime) -> list[str]:
    return [
        f"  at call time ({agent}): index of {ct.chunks} chunks loaded in {ct.load_ms:.0f} ms "
        f"({ct.cached_load_ms:.0f} ms from cached vectors); per turn: embedding p50 "
        f"{_p(ct.embed_ms, 50):.1f} ms, search p50 {_p(ct.search_ms, 50):.2f} ms, whole answer p50 "
        f"{_p(ct.answer_ms, 50):.1f} / "
        f"p95 {_p(ct.answer_ms, 95):.1f} / max {max(ct.answer_ms, default=0):.1f} ms; "
        f"{ct.over_budget()} of {len(ct.answer_ms)} over the {ANSWER_BUDGET_S * 1000:.0f} ms budget",
    ]
