"""The one embedding function of the knowledge base: the shared MiniLM encoder of `cells.nlu`.

Ingestion (here, in the control plane) and the agent runtime's intent matching use the same module and
weights, so a question and the chunks it should find live in one vector space. `model_id` is stored on
every chunk; chunks embedded by another model are re-embedded (`store.reembed_stale`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import numpy as np

from cells.nlu.embeddings import get_encoder

MINILM_ID: Final = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    model_id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


class MiniLmEmbedder:
    """The shared MiniLM encoder, with BLAS held to `blas_threads` threads in this process.

    A question is a handful of tokens: OpenBLAS's threads cost more to wake and join than the matrix
    products they share, and on a busy machine they spin against every other process. Measured on
    this 2-core machine under load: 29 ms per question single-threaded, 259 ms with OpenBLAS's
    default threads. The limit is process-wide (OpenBLAS has one setting), set at the first encoding.
    """

    model_id = MINILM_ID
    dim = 384
    _limited = False

    def __init__(self, blas_threads: int | None = 1) -> None:
        self.blas_threads = blas_threads

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # Limited at the first encoding, so a process that never embeds keeps its BLAS settings.
        if self.blas_threads is not None and not MiniLmEmbedder._limited:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=self.blas_threads, user_api="blas")
            MiniLmEmbedder._limited = True
        return get_encoder().encode(list(texts))


def default_embedder() -> Embedder:
    return MiniLmEmbedder()
