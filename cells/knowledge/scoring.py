"""The scoring every retrieval path shares: cosine similarity, top-k, and the "known" threshold.

pgvector's `<=>` is cosine distance (1 - cosine similarity); on unit vectors cosine similarity is the
dot product, which is what `VectorIndex` computes in memory for the benchmark. tests prove the two rank
and score alike on the real database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from cells.contract.knowledge import KnowledgeAnswer, KnowledgeHit
from cells.knowledge.chunker import Chunk
from cells.knowledge.lexical import Bm25

DEFAULT_THRESHOLD: Final = 0.35
"""Cosine similarity of the nearest chunk below which the agent says it does not know. Set by
`autospeak bench knowledge` on the demo agents' 188 questions, leaning to refusal because a wrong
answer costs more than an offer to take a message: 0.35 refuses 81% of the questions the knowledge
cannot answer and answers 72% of those it can (0.30: 60% / 85%; 0.40: 90% / 52%)."""
DEFAULT_TOP_K: Final = 3
MAX_TOP_K: Final = 20
CANDIDATES: Final = 10
"""Nearest chunks by cosine that the lexical re-ranking orders (at least top_k)."""
LEXICAL_WEIGHT: Final = 0.06
"""BM25 (over the candidates) added to the cosine similarity when ordering them; chosen on the bench's
questions (R@1 72% -> 82% there; an in-sample figure)."""


def rerank(question: str, hits: list[KnowledgeHit], k: int,
           weight: float = LEXICAL_WEIGHT) -> list[KnowledgeHit]:
    """The k best of the cosine-nearest `hits`, ordered by cosine + weight * BM25 among them. Each hit
    keeps its cosine `score`, which alone decides whether the knowledge is known."""
    if weight == 0 or len(hits) < 2:
        return hits[:k]
    lexical = Bm25([f"{h.section}: {h.text}" if h.section else h.text for h in hits]).scores(question)
    order = sorted(range(len(hits)), key=lambda i: (-(hits[i].score + weight * lexical[i]), i))
    return [hits[i] for i in order[:k]]


def answer_from(nearest: list[KnowledgeHit], hits: list[KnowledgeHit], threshold: float,
                elapsed_ms: float) -> KnowledgeAnswer:
    """`hits` (re-ranked) answer the question if the cosine-nearest chunk reaches the threshold."""
    known = bool(nearest) and nearest[0].score >= threshold
    return KnowledgeAnswer(known, threshold, hits, round(elapsed_ms, 3))


@dataclass
class IndexedChunk:
    chunk: Chunk
    document_id: str
    document_title: str


class VectorIndex:
    """Chunks and their unit vectors in memory: exact cosine top-k (the benchmark's service twin)."""

    def __init__(self, items: Sequence[IndexedChunk], vectors: np.ndarray) -> None:
        if len(items) != len(vectors):
            raise ValueError("one vector per chunk")
        self.items = list(items)
        self.vectors = np.asarray(vectors, dtype=np.float32)

    def ranked(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(item index, cosine similarity) of the k best items, best first."""
        if not self.items:
            return []
        scores = self.vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(i), float(scores[i])) for i in order]

    def top(self, query: np.ndarray, k: int) -> list[KnowledgeHit]:
        return [self._hit(i, score) for i, score in self.ranked(query, k)]

    def search(self, question: str, query: np.ndarray, k: int) -> list[KnowledgeHit]:
        """What the service answers: the cosine-nearest candidates, re-ranked."""
        return rerank(question, self.top(query, max(k, CANDIDATES)), k)

    def _hit(self, i: int, score: float) -> KnowledgeHit:
        item = self.items[i]
        return KnowledgeHit(item.chunk.text, round(score, 6), item.document_id, item.document_title,
                            item.chunk.section, item.chunk.seq)
