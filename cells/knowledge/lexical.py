"""Okapi BM25 (Robertson & Zaragoza's formulation, k1=1.5, b=0.75).

The search re-ranks the nearest chunks by it (a caller's exact words, "MetLife", "cot", "balcony",
often decide between neighbours MiniLM scores alike), and the benchmark uses it alone as the keyword
baseline.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Final

_TOKEN: Final = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS: Final = frozenset(
    "a an and are as at be by can do does for from have how i if in is it its me my of on or our so "
    "that the their there this to we what when where which who will with you your".split())


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


class Bm25:
    def __init__(self, docs: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(tokens(d)) for d in docs]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = sum(self.lengths) / max(1, len(self.docs))
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = tokens(query)
        out = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / self.avg)
            out.append(sum(self.idf.get(t, 0.0) * doc[t] * (self.k1 + 1) / (doc[t] + norm)
                           for t in terms if t in doc))
        return out
