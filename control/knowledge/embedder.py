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
    model_id = MINILM_ID
    dim = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return get_encoder().encode(list(texts))


def default_embedder() -> Embedder:
    return MiniLmEmbedder()
