"""An in-memory knowledge base of files: the `KnowledgeSearch` of the embedded worker and of tests.

The embedded worker has no database, so it reads its demo knowledge files at start, cuts them with the
service's extractor and chunker, embeds the chunks with the shared MiniLM encoder and searches them as
the service does (cosine top candidates, BM25 re-ranking, the same "known" threshold). One index serves
one agent (the files are that agent's), so tenant and agent scoping is the choice of files.

Vectors are cached in `cache_dir` under a hash of the model and the chunk texts: a changed file or model
misses the cache and is embedded again. Loading is measured (`stats`), cached or not.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from cells.contract.knowledge import KnowledgeAnswer
from cells.knowledge.chunker import chunk_blocks
from cells.knowledge.embedder import Embedder, default_embedder
from cells.knowledge.extract import ExtractError, extract
from cells.knowledge.scoring import (
    CANDIDATES,
    DEFAULT_THRESHOLD,
    IndexedChunk,
    VectorIndex,
    answer_from,
    rerank,
)

log = logging.getLogger(__name__)
CONTENT_TYPES: Final = {".md": "text/markdown", ".markdown": "text/markdown", ".html": "text/html",
                        ".htm": "text/html", ".csv": "text/csv", ".txt": "text/plain",
                        ".pdf": "application/pdf"}


@dataclass(frozen=True)
class LoadStats:
    chunks: int
    documents: int
    cached: bool
    load_ms: float  # reading, cutting and embedding (or reading the cached vectors)


def read_chunks(paths: Sequence[Path]) -> list[IndexedChunk]:
    """Every file's chunks, by the service's extractor and chunker; a file that cannot be read fails
    with its name (a demo agent with a broken file should not start quietly without its knowledge)."""
    out: list[IndexedChunk] = []
    for path in paths:
        kind = CONTENT_TYPES.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"{path.name}: not a knowledge file type ({', '.join(sorted(CONTENT_TYPES))})")
        try:
            blocks = extract(path.read_bytes(), kind)
        except ExtractError as exc:
            raise ValueError(f"{path.name}: {exc}") from None
        out.extend(IndexedChunk(c, path.name, path.name) for c in chunk_blocks(blocks))
    return out


class LocalKnowledgeSearch:
    """`KnowledgeSearch` over files held in memory. Build it cheaply; `load()` (blocking, a worker's
    warm-up runs it in a thread) reads and embeds, and the first search loads it if nothing did."""

    def __init__(self, paths: Sequence[Path], *, embedder: Embedder | None = None,
                 threshold: float = DEFAULT_THRESHOLD, cache_dir: Path | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.embedder = embedder or default_embedder()
        self.threshold = threshold
        self.cache_dir = cache_dir
        self.index: VectorIndex | None = None
        self.stats: LoadStats | None = None
        self._lock = threading.Lock()

    def load(self) -> LoadStats:
        with self._lock:
            if self.stats is not None:
                return self.stats
            started = time.perf_counter()
            items = read_chunks(self.paths)
            texts = [i.chunk.embed_text for i in items]
            vectors, cached = self._vectors(texts)
            self.index = VectorIndex(items, vectors)
            self.stats = LoadStats(len(items), len(self.paths), cached,
                                   round((time.perf_counter() - started) * 1000, 1))
            log.info("knowledge: %d chunks of %d files in %.0f ms (%s)", self.stats.chunks,
                     self.stats.documents, self.stats.load_ms, "cached vectors" if cached else "embedded")
            return self.stats

    def _vectors(self, texts: list[str]) -> tuple[np.ndarray, bool]:
        if not texts:
            return np.zeros((0, self.embedder.dim), np.float32), False
        digest = hashlib.sha256("\x1e".join([self.embedder.model_id, *texts]).encode()).hexdigest()[:24]
        path = self.cache_dir / f"knowledge-{digest}.npy" if self.cache_dir else None
        if path is not None and path.is_file():
            try:
                vectors = np.load(path)
                if vectors.shape == (len(texts), self.embedder.dim):
                    return vectors.astype(np.float32), True
            except (OSError, ValueError):
                pass  # a damaged cache file is embedded again and overwritten
        vectors = np.asarray(self.embedder.encode(texts), dtype=np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(path)  # whole or nothing: a concurrent reader never sees half a file
        return vectors, False

    def search_sync(self, question: str, top_k: int = 3) -> KnowledgeAnswer:
        self.load()
        assert self.index is not None
        started = time.perf_counter()
        query = self.embedder.encode([question])[0]
        nearest = self.index.top(query, max(top_k, CANDIDATES))
        hits = rerank(question, nearest, top_k)  # the service's ordering of the candidates
        return answer_from(nearest, hits, self.threshold, (time.perf_counter() - started) * 1000)

    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        # The encoder blocks for tens of milliseconds: off the event loop, which paces every call's audio.
        return await asyncio.to_thread(self.search_sync, question, top_k)
