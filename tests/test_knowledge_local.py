"""The embedded worker's in-memory knowledge: the service's chunks and scores, vectors cached by model and
text (a changed file or a damaged cache is embedded again), and clear errors for files it cannot use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from test_knowledge_bench import BagOfWords

from cells.knowledge.local import LocalKnowledgeSearch
from cells.worker.__main__ import local_knowledge

FAQ = ("question,answer\nIs there parking?,Yes: free parking behind the building.\n"
       "Do you open on Sundays?,No.\n")


class Counting(BagOfWords):
    def __init__(self) -> None:
        self.texts = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return super().encode(texts)


def test_vectors_are_cached_by_model_and_text(tmp_path: Path) -> None:
    doc = tmp_path / "faq.csv"
    doc.write_text(FAQ)
    cache = tmp_path / "cache"
    first = Counting()
    cold = LocalKnowledgeSearch([doc], embedder=first, cache_dir=cache, threshold=0.3)
    assert not cold.load().cached and first.texts == 2
    again = Counting()
    warm = LocalKnowledgeSearch([doc], embedder=again, cache_dir=cache, threshold=0.3)
    assert warm.load().cached and again.texts == 0
    answer = asyncio.run(warm.search("is there parking"))
    assert answer.known and "free parking" in answer.hits[0].text
    assert answer.hits[0].document_title == "faq.csv"
    # A changed file misses the cache; so does a damaged cache file, which is then rewritten.
    doc.write_text(FAQ.replace("free", "paid"))
    changed = Counting()
    assert not LocalKnowledgeSearch([doc], embedder=changed, cache_dir=cache).load().cached
    assert changed.texts == 2
    for f in cache.glob("*.npy"):
        f.write_bytes(b"not an array")
    damaged = Counting()
    assert not LocalKnowledgeSearch([doc], embedder=damaged, cache_dir=cache).load().cached
    assert LocalKnowledgeSearch([doc], embedder=Counting(), cache_dir=cache).load().cached


def test_files_it_cannot_use_fail_with_their_name(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(ValueError, match=r"notes\.txt"):
        LocalKnowledgeSearch([garbage], embedder=BagOfWords()).load()
    image = tmp_path / "logo.png"
    image.write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"logo\.png"):
        LocalKnowledgeSearch([image], embedder=BagOfWords()).load()
    with pytest.raises(SystemExit, match="does not exist"):
        local_knowledge([tmp_path / "missing.md"], tmp_path)
    with pytest.raises(SystemExit, match="not a knowledge file"):
        local_knowledge([image], tmp_path)
    (tmp_path / "faq.csv").write_text(FAQ)
    # A folder gives its knowledge files only.
    assert [p.name for p in local_knowledge([tmp_path], tmp_path).paths] == ["faq.csv", "notes.txt"]


def test_an_empty_knowledge_base_knows_nothing(tmp_path: Path) -> None:
    empty = LocalKnowledgeSearch([], embedder=BagOfWords())
    answer = asyncio.run(empty.search("is there parking"))
    assert not answer.known and answer.hits == [] and empty.stats is not None and empty.stats.chunks == 0
