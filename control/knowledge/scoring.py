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
from control.knowledge.chunker import Chunk

DEFAULT_THRESHOLD: Final = 0.30
"""Best-chunk similarity below which the agent says it does not know (calibrated by
`autospeak bench knowledge` on the demo agents' questions; see evals/knowledge)."""
DEFAULT_TOP_K: Final = 3
MAX_TOP_K: Final = 20


def answer_from(hits: list[KnowledgeHit], threshold: float, elapsed_ms: float) -> KnowledgeAnswer:
    known = bool(hits) and hits[0].score >= threshold
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

    def _hit(self, i: int, score: float) -> KnowledgeHit:
        item = self.items[i]
        return KnowledgeHit(item.chunk.text, round(score, 6), item.document_id, item.document_title,
                            item.chunk.section, item.chunk.seq)
