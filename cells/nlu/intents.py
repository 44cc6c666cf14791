"""Intent recognition by meaning: a caller's turn against each intent's example utterances.

An agent definition gives, per intent, a handful of things a caller might say ("I need to move my
appointment", "Can we do another day?"). The matcher embeds them once; a turn is embedded and scored
against every intent by cosine similarity (an intent's score: the mean of its k best examples), and
the best intent is returned only when it is both close enough (threshold) and clearly ahead of the
runner-up (margin). Below either, `match` returns None: the "sorry, I didn't catch that" branch.

How it plugs into the embedded brain: cells.agents.reception.semantic. The rule-based reader
(cells.agents.reception.intents.understand) keeps reading slots and its context-dependent intents; at an open
question the matcher's intent is taken where the rules found none, or only a "book" read from the
noun "appointment" (most of the rules' misses on new phrasings are such a "book" in a move or cancel
request). python -m evals.nlu.intents compares the orders and the wired reading.
Slots (dates, times, names, phone numbers) stay with the typed parsers; `match_option` maps a free
phrasing onto one of a short list of options ("I'd like my teeth cleaned" -> "cleaning").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cells.nlu.embeddings import SentenceEncoder, get_encoder

DATA = Path(__file__).parent / "data"
RECEPTION_INTENTS = DATA / "reception_intents.json"
# Chosen without the evaluation sets (python -m evals.nlu.intents --tune): top_k 3 scored best in
# leave-one-out over the examples; at 0.35, 1 of the examples file's 10 off-topic turns gets through
# (4 at 0.30) while 0.40 drops 7 points of left-out examples. The margin is a tie guard: a near tie
# (move against cancel) is better asked again than guessed; it costs 2 points of leave-one-out.
DEFAULT_THRESHOLD = 0.35
DEFAULT_MARGIN = 0.01
DEFAULT_TOP_K = 3


@dataclass(frozen=True)
class IntentMatch:
    intent: str
    score: float
    runner_up: str | None
    runner_up_score: float


@dataclass(frozen=True)
class ScoredText:
    """One text's unit embedding and its row of intent scores (so the vector can be reused)."""
    vector: np.ndarray
    scores: np.ndarray


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected the caller's text as str, got {type(text).__name__}")
    return text.strip()


class IntentMatcher:
    """Matches a turn to one of a fixed set of intents, each given by example utterances."""

    def __init__(self, examples: Mapping[str, Sequence[str]], *, encoder: SentenceEncoder | None = None,
                 threshold: float = DEFAULT_THRESHOLD, margin: float = DEFAULT_MARGIN,
                 top_k: int = DEFAULT_TOP_K) -> None:
        if not examples:
            raise ValueError("an intent matcher needs at least one intent")
        texts: list[str] = []
        owner: list[int] = []
        for i, (intent, utterances) in enumerate(examples.items()):
            if isinstance(utterances, str) or not isinstance(intent, str) or not intent:
                raise TypeError(f"intent {intent!r}: give a list of example utterances under a name")
            clean = [_check_text(u) for u in utterances]
            if not clean or not all(clean):
                raise ValueError(f"intent {intent!r} needs non-empty example utterances")
            texts += clean
            owner += [i] * len(clean)
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.intents = list(examples)
        self.threshold, self.margin, self.top_k = threshold, margin, top_k
        self._encoder = encoder or get_encoder()
        self._examples = self._encoder.encode(texts)  # (n_examples, dim), unit rows
        self._owner = np.asarray(owner)

    @classmethod
    def from_file(cls, path: str | Path = RECEPTION_INTENTS, **kwargs: object) -> IntentMatcher:
        """From a JSON file {"intents": {name: [utterance, ...]}} (the shape of cells/nlu/data/*.json)."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("intents"), dict):
            raise ValueError(f"{path}: expected an object with an 'intents' mapping")
        return cls(data["intents"], **kwargs)  # type: ignore[arg-type]

    def score_matrix(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), n_intents): each intent's score, the mean of its top_k example cosines."""
        return self._score_vectors(self._encoder.encode([_check_text(t) for t in texts]))

    def score_row(self, text: str) -> ScoredText:
        """One text's embedding and intent scores (decide(row.scores) is match(text))."""
        vector = self._encoder.encode([_check_text(text)])[0]
        return ScoredText(vector, self._score_vectors(vector[None, :])[0])

    def _score_vectors(self, vectors: np.ndarray) -> np.ndarray:
        sims = vectors @ self._examples.T
        out = np.empty((len(vectors), len(self.intents)), dtype=np.float32)
        for j in range(len(self.intents)):
            own = sims[:, self._owner == j]
            k = min(self.top_k, own.shape[1])
            out[:, j] = np.sort(own, axis=1)[:, -k:].mean(axis=1)
        return out

    def scores(self, text: str) -> dict[str, float]:
        row = self.score_matrix([text])[0]
        return {intent: float(s) for intent, s in zip(self.intents, row, strict=True)}

    def decide(self, row: np.ndarray) -> IntentMatch | None:
        """The match a row of score_matrix stands for, or None (too far, or too close to call)."""
        order = np.argsort(row)[::-1]
        best = int(order[0])
        second = int(order[1]) if len(order) > 1 else None
        second_score = float(row[second]) if second is not None else -1.0
        if row[best] < self.threshold or row[best] - second_score < self.margin:
            return None
        return IntentMatch(self.intents[best], float(row[best]),
                           self.intents[second] if second is not None else None, second_score)

    def match(self, text: str) -> IntentMatch | None:
        """The caller's intent, or None for an empty, off-topic or ambiguous turn."""
        if not _check_text(text):
            return None
        return self.decide(self.score_matrix([text])[0])

    def match_many(self, texts: Sequence[str]) -> list[IntentMatch | None]:
        """match() for many texts, embedded as one batch."""
        rows = self.score_matrix(texts)
        return [self.decide(row) if _check_text(t) else None for t, row in zip(texts, rows, strict=True)]


_option_cache: dict[tuple[tuple[str, tuple[str, ...]], ...], np.ndarray] = {}
_option_lock = threading.Lock()


def _option_vectors(options: tuple[tuple[str, tuple[str, ...]], ...], encoder: SentenceEncoder) -> np.ndarray:
    """One unit vector per (option, phrasing); cached, as the same lists come back every call."""
    with _option_lock:
        cached = _option_cache.get(options)
    if cached is None:
        cached = encoder.encode([p for _, phrasings in options for p in phrasings])
        with _option_lock:
            if len(_option_cache) > 256:
                _option_cache.clear()
            _option_cache[options] = cached
    return cached


def match_option(text: str, options: Sequence[str] | Mapping[str, Sequence[str]], *,
                 threshold: float = 0.35, margin: float = 0.03,
                 encoder: SentenceEncoder | None = None,
                 vector: np.ndarray | None = None) -> tuple[str, float] | None:
    """Which of a few options the caller means, with its cosine; None when none is close or two tie.

    `options` is a list of labels ("cleaning", "filling"), or labels mapped to phrasings that describe
    them ({"cleaning": ["check-up and cleaning", "hygiene visit"]}); a label's score is its best
    phrasing, the label itself included. `vector`: the text's embedding when the caller has it already.
    """
    text = _check_text(text)
    if isinstance(options, str):
        raise TypeError("options must be a list of labels or a mapping of label -> phrasings, not a str")
    table = options if isinstance(options, Mapping) else {o: [o] for o in options}
    frozen = tuple((label, tuple([label, p] if isinstance(p, str) else [label, *p]))
                   for label, p in table.items())
    if (not text and vector is None) or not frozen:
        return None
    encoder = encoder or get_encoder()
    sims = _option_vectors(frozen, encoder) @ (encoder.encode([text])[0] if vector is None else vector)
    scores, start = [], 0
    for label, phrasings in frozen:
        scores.append((float(sims[start:start + len(phrasings)].max()), label))
        start += len(phrasings)
    scores.sort(reverse=True)
    (best, label), runner_up = scores[0], scores[1][0] if len(scores) > 1 else -1.0
    return (label, best) if best >= threshold and best - runner_up >= margin else None
