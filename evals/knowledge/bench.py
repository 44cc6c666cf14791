"""Retrieval quality of the knowledge base on the demo agents, beside a BM25 keyword baseline.

Per agent: its demo knowledge files are cut by the service's extractor and chunker and embedded with
the service's encoder (MiniLM); each question is embedded and scored against every chunk by cosine
similarity, which is what pgvector's `<=>` computes in the service (tests/test_knowledge_api.py checks
the two agree on the real database). BM25 ranks the same chunks in the same run.

Figures: recall@1, recall@3 and MRR over the answerable questions (a hit is a chunk holding the
expected text), abstention at the threshold (unanswerable questions must score below it, answerable
ones at or above it), milliseconds per query (question embedding + scoring, one core) and the compute
cost per query at a stated CPU price. BM25 scores have no fixed scale, so its abstention is shown at
the threshold that suits it best on these very questions (an optimistic figure for it). Per agent also
what a call pays (evals/knowledge/call_time.py): the embedded worker's index load, and per caller turn
the embedding, the search and the whole answer against the answer budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from cells.knowledge.embedder import Embedder, default_embedder
from cells.knowledge.lexical import Bm25
from cells.knowledge.scoring import CANDIDATES, DEFAULT_THRESHOLD, IndexedChunk, VectorIndex, rerank
from evals.knowledge import call_time
from evals.knowledge.corpus import AGENTS, QUESTIONS_DIR, Question, agent_files, load_chunks, load_questions

DEPTH: Final = 10
SWEEP: Final = (0.25, 0.30, 0.35, 0.40, 0.45)
CPU_DOLLARS_PER_HOUR: Final = 0.05
"""Assumed price of one vCPU-hour (a general-purpose cloud VM's share); the query uses one core."""


@dataclass
class Run:
    """One method's outcome on one question set."""

    ranks: list[int | None] = field(default_factory=list)  # per answerable question; None: not in top
    best: list[float] = field(default_factory=list)  # per question: the top score
    answerable: list[bool] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)

    def recall(self, k: int) -> float:
        return sum(1 for r in self.ranks if r is not None and r <= k) / max(1, len(self.ranks))

    def mrr(self) -> float:
        return sum(1.0 / r for r in self.ranks if r is not None) / max(1, len(self.ranks))

    def abstention(self, threshold: float) -> tuple[float, float, float]:
        """(accuracy over all, answerable answered, unanswerable refused) at `threshold`."""
        known = [b >= threshold for b in self.best]
        hits = [k == a for k, a in zip(known, self.answerable, strict=True)]
        ans = [k for k, a in zip(known, self.answerable, strict=True) if a]
        unans = [not k for k, a in zip(known, self.answerable, strict=True) if not a]
        return (sum(hits) / len(hits), sum(ans) / max(1, len(ans)), sum(unans) / max(1, len(unans)))

    def best_threshold(self) -> tuple[float, float]:
        candidates = sorted(set(self.best))
        scored = [(self.abstention(t)[0], -abs(t), t) for t in [*candidates, max(candidates) + 1e-6]]
        accuracy, _, threshold = max(scored)
        return threshold, accuracy


def _rank(matches: list[bool]) -> int | None:
    return next((i + 1 for i, m in enumerate(matches[:DEPTH]) if m), None)


def run_agent(questions: list[Question], files: list[Path],
              embedder: Embedder) -> tuple[Run, Run, int, float]:
    """(MiniLM run, BM25 run, chunk count, seconds to embed the chunks)."""
    chunks = load_chunks(files)
    started = time.perf_counter()
    vectors = embedder.encode([c.embed_text for _, c in chunks])
    index_s = time.perf_counter() - started
    index = VectorIndex([IndexedChunk(c, title, title) for title, c in chunks], vectors)
    bm25 = Bm25([c.embed_text for _, c in chunks])
    dense, sparse = Run(), Run()
    for q in questions:
        t0 = time.perf_counter()
        nearest = index.top(embedder.encode([q.text])[0], max(DEPTH, CANDIDATES))
        hits = rerank(q.text, nearest, DEPTH)  # the service's ordering
        dense.ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        scores = np.asarray(bm25.scores(q.text))
        order = np.argsort(-scores, kind="stable")[:DEPTH]
        sparse.ms.append((time.perf_counter() - t0) * 1000)
        dense_texts = [f"{h.section}: {h.text}" if h.section else h.text for h in hits]
        sparse_texts = [chunks[int(i)][1].embed_text for i in order]
        for run, texts, best in ((dense, dense_texts, nearest[0].score),
                                 (sparse, sparse_texts, float(scores[order[0]]))):
            run.best.append(best)
            run.answerable.append(q.answerable)
            if q.answerable:
                run.ranks.append(_rank([q.matches_text(t) for t in texts]))
    return dense, sparse, len(chunks), index_s


def _cost(ms: float) -> float:
    return ms / 1000 / 3600 * CPU_DOLLARS_PER_HOUR


def _line(name: str, run: Run, abstain: tuple[float, float, float], threshold_note: str) -> str:
    ms = float(np.median(run.ms))
    return (f"  {name:<7} R@1 {run.recall(1):5.1%}  R@3 {run.recall(3):5.1%}  MRR {run.mrr():.3f}  "
            f"abstain acc {abstain[0]:5.1%} (answers {abstain[1]:5.1%}, refuses {abstain[2]:5.1%}) "
            f"{threshold_note}  {ms:6.2f} ms/query  ${_cost(ms) * 1e6:.2f}/1M queries")


def report(agents: tuple[str, ...] = AGENTS, questions_file: Path | None = None,
           threshold: float = DEFAULT_THRESHOLD, embedder: Embedder | None = None) -> str:
    embedder = embedder or default_embedder()
    embedder.encode(["warm up"])  # load the weights outside the timings
    lines = [f"knowledge retrieval: {embedder.model_id} (cosine top {CANDIDATES}, BM25 re-ranked, threshold "
             f"{threshold:g}) vs BM25 alone; "
             f"CPU priced at ${CPU_DOLLARS_PER_HOUR}/vCPU-hour; no API cost (all offline)"]
    pooled_dense, pooled_sparse = Run(), Run()
    for agent in agents:
        path = questions_file or QUESTIONS_DIR / f"{agent}.txt"
        questions = load_questions(path)
        dense, sparse, n_chunks, index_s = run_agent(questions, agent_files(agent), embedder)
        n_ans = sum(q.answerable for q in questions)
        lines.append(f"{agent}: {len(questions)} questions ({n_ans} answerable, "
                     f"{len(questions) - n_ans} not), "
                     f"{n_chunks} chunks embedded in {index_s:.2f} s")
        lines.append(_line("minilm", dense, dense.abstention(threshold), f"@{threshold:g}"))
        t, _ = sparse.best_threshold()
        lines.append(_line("bm25", sparse, sparse.abstention(t), f"@{t:.2f}*"))
        lines.extend(call_time.lines(agent, call_time.measure(agent_files(agent), [q.text for q in questions],
                                                              embedder)))
        for pooled, run in ((pooled_dense, dense), (pooled_sparse, sparse)):
            for name in ("ranks", "best", "answerable", "ms"):
                getattr(pooled, name).extend(getattr(run, name))
    if len(agents) > 1:
        lines.append(f"all agents: {len(pooled_dense.best)} questions")
        lines.append(_line("minilm", pooled_dense, pooled_dense.abstention(threshold), f"@{threshold:g}"))
        t, _ = pooled_sparse.best_threshold()
        lines.append(_line("bm25", pooled_sparse, pooled_sparse.abstention(t), f"@{t:.2f}*"))
        t, acc = pooled_dense.best_threshold()
        lines.append(f"  minilm's most accurate threshold on these questions: {t:.3f} "
                     f"(abstain acc {acc:.1%})")
        sweep = ", ".join(f"{t:.2f}: {a:.0%}/{r:.0%}" for t in SWEEP
                          for _, a, r in [pooled_dense.abstention(t)])
        lines.append(f"  minilm threshold -> answers/refuses: {sweep}")
    lines.append("  * BM25's threshold is the best one for it on these same questions (optimistic)")
    return "\n".join(lines)
