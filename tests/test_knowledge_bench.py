"""The knowledge benchmark's parts: question sets that fit their knowledge files, BM25, the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cells.cli import build_parser
from cells.knowledge.lexical import Bm25, tokens
from evals.knowledge.bench import Run, report
from evals.knowledge.corpus import AGENTS, QUESTIONS_DIR, agent_files, load_chunks, load_questions


@pytest.mark.parametrize("agent", AGENTS)
def test_each_question_set_is_big_enough_and_every_expected_text_is_in_the_knowledge(agent: str) -> None:
    questions = load_questions(QUESTIONS_DIR / f"{agent}.txt")
    assert len(questions) >= 60
    unanswerable = [q for q in questions if not q.answerable]
    assert len(unanswerable) >= 10
    chunks = [c for _, c in load_chunks(agent_files(agent))]
    for q in questions:
        if q.answerable:
            assert any(q.matches(c) for c in chunks), f"{agent}: nothing holds {q.expected} ({q.text})"
    # Callers' phrasing, not the documents' own sentences.
    texts = " ".join(c.embed_text.lower() for c in chunks)
    assert sum(q.text.lower() in texts for q in questions) == 0


def test_alternatives_and_unanswerable_lines_parse(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("# comment\nfoo || bar | is it foo\n- | not known\n")
    questions = load_questions(path)
    assert [(q.text, q.expected) for q in questions] == [("is it foo", ("foo", "bar")), ("not known", ())]
    path.write_text("no separator here\n")
    with pytest.raises(ValueError, match="expected"):
        load_questions(path)


def test_bm25_prefers_the_rare_matching_term() -> None:
    bm25 = Bm25(["parking is free for guests", "breakfast is served at eight", "guests love breakfast"])
    scores = bm25.scores("where can guests park? parking please")
    assert int(np.argmax(scores)) == 0
    assert bm25.scores("nothing relevant here") == [0.0, 0.0, 0.0]
    assert tokens("What's the price?") == ["what's", "price"]


def test_metrics() -> None:
    run = Run(ranks=[1, 2, None, 4], best=[0.9, 0.5, 0.2, 0.6, 0.1, 0.4], answerable=[True] * 4 + [False] * 2)
    assert run.recall(1) == 0.25 and run.recall(3) == 0.5
    assert run.mrr() == pytest.approx((1 + 0.5 + 0.25) / 4)
    accuracy, answers, refuses = run.abstention(0.45)
    assert (answers, refuses) == (0.75, 1.0) and accuracy == pytest.approx(5 / 6)
    threshold, best = run.best_threshold()
    assert best == pytest.approx(5 / 6) and 0.1 < threshold <= 0.5  # ties: either side of 0.4 ties


class BagOfWords:
    """A tiny deterministic embedder: hashed word counts, normalised."""

    model_id = "bag-of-words"
    dim = 64

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in tokens(t):
                out[i, sum(map(ord, w)) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_report_runs_both_methods_on_one_agent(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("Teeth whitening | teeth whitening price\n- | zebra crossing\n")
    text = report(("clinic",), path, threshold=0.5, embedder=BagOfWords())
    assert "clinic: 2 questions (1 answerable, 1 not)" in text
    minilm = next(line for line in text.splitlines() if line.strip().startswith("minilm"))
    assert "R@1 100.0%" in minilm and "abstain acc 100.0%" in minilm
    assert any(line.strip().startswith("bm25") for line in text.splitlines())
    assert "at call time (clinic): index of" in text and "of 2 over the 300 ms budget" in text


def test_the_cli_has_the_knowledge_bench() -> None:
    args = build_parser().parse_args(["bench", "knowledge", "--agent", "hotel", "--threshold", "0.3"])
    assert args.agent == "hotel" and args.threshold == 0.3 and args.questions is None
