"""Reading a caller's turn for attacks on the agent itself, before any brain sees it.

Two kinds: "injection" (prompt injection, jailbreaks, asking for the agent's instructions, changes to
everyone's records, fishing for other callers' data) and "abuse" (profanity or insults aimed at the
agent). Patterns catch the plain phrasings deterministically; the sentence encoder (cells.nlu) catches
rewordings by similarity to example attacks (cells.dialogue.guard_examples), counted only when the turn
is also clearly nearer an attack than any ordinary request of the verticals. Without the model (not
installed, or not loaded yet) the patterns alone decide.

False positives are measured on the caller paraphrase suites: python -m evals.dialogue.guard_fp
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cells.dialogue.guard_examples import ATTACKS, TASKS

if TYPE_CHECKING:
    import numpy as np

    from cells.nlu.embeddings import SentenceEncoder

log = logging.getLogger(__name__)

# Similarity to the nearest example attack, and its lead over the nearest ordinary request. Chosen on
# the examples and the held-out attacks of tests/test_call_guard.py against the paraphrase suites
# (python -m evals.dialogue.guard_fp prints the false-positive rate at these values).
SIMILARITY = 0.62
LEAD = 0.12

_ANY = r"(?:\w+\s+){0,3}?"  # up to three words between the parts of a phrase
_INJECTION = [re.compile(p) for p in (
    rf"\b(?:ignore|disregard|forget|override|bypass|skip)\s+{_ANY}(?:instructions?|rules|prompt|guidelines|"
    r"programming|orders|restrictions|directives|script|training|filters|"
    r"everything (?:you were|you've been|i) (?:told|said))\b",
    r"\b(?:developer|debug|god|admin|jailbreak|unrestricted|dan)\s+mode\b",
    r"\byou are now\b|\byou're now\b|\bfrom now on,? you(?: are|'re| will)\b",
    r"\b(?:pretend|act|behave)\s+(?:to be|as if|as|like)\s+(?:\w+\s+){0,3}?"
    r"(?:ai|assistant|bot|model|chatgpt|someone)\b",
    r"\b(?:no|without any|without)\s+(?:restrictions|limits|rules|filters|guardrails)\b",
    rf"\b(?:repeat|reveal|show|tell|print|read|give|recite|what (?:is|are|was|were))\s+{_ANY}"
    r"(?:system prompt|(?:your|the) (?:prompt|instructions|system message|configuration|rules you))\b",
    r"\bsystem prompt\b|\bsystem message\b|\bprompt injection\b",
    rf"\b(?:cancel|delete|remove|wipe|clear|erase|get rid of|move|change|reject|approve|pass|fail)\s+{_ANY}"
    r"(?:all|every|everyone's|everybody's|each|other (?:people's|patients'?|guests'?|customers'?|callers'?))"
    r"\s+(?:(?!my\b)\w+\s+)?(?:appointments?|bookings?|reservations?|candidates?|records?|calendar|patients|"
    r"guests)\b",
    r"\b(?:for|of)\s+(?:everyone|everybody|all (?:patients|guests|customers|callers|candidates))\b",
    rf"\b(?:other|previous|last|another)\s+(?:patients?|callers?|customers?|guests?|candidates?)(?:'s?)?\s+"
    rf"{_ANY}(?:numbers?|names?|details|bookings?|records?|information|data|addresses)\b",
    r"\bwho else (?:is|has|was) (?:booked|coming|staying|in)\b",
    r"\b(?:numbers?|names?|details|bookings?|records?|addresses|data)\s+of\s+(?:the\s+|your\s+)?(?:other|another|"
    r"previous|last)\s+(?:patients?|callers?|customers?|guests?|candidates?|people|person)\b",
    r"\b(?:turn off|switch off|disable|remove|drop)\s+(?:your|all|the)\s+(?:\w+\s+)?(?:filters|rules|safety|"
    r"guardrails|restrictions|limits)\b",
    r"\b(?:your|the)\s+(?:programmers?|developers?|creators?|makers?|operators?)\s+(?:\w+\s+)?"
    r"(?:tell|told|instruct\w*|program\w*|say|said)\b",
    r"\b(?:obey|listen to|answer to|work for)\s+only\s+me\b|\bnew (?:rules?|instructions?|orders?)\b",
    r"\b(?:skip|bypass|turn off|disable)\s+(?:the\s+)?(?:\w+\s+)?"
    r"(?:confirmation|verification|safety|checks?)\b",
)]
_PROFANITY = re.compile(
    r"\b(?:f+u+c+k+\w*|f\*+\w*|motherf\w*|sh[i1]t(?:ty|head)?|bullshit|cunt\w*|bitch\w*|bastard\w*|"
    r"ass ?holes?|arse ?holes?|dick ?heads?|twats?|wankers?|pricks?|dumbass|jackass|piss off|screw you|"
    r"shut (?:the f\w* )?up|go to hell|go die|kill yourself)\b")
_INSULT = re.compile(
    r"\b(?:you(?:'re| are)?|this|stupid|useless|dumb|damn|bloody)\s+(?:\w+\s+)?"
    r"(?:stupid|useless|idiot(?:ic)?|moron(?:ic)?|dumb|worthless|pathetic|retard\w*|imbecile|garbage|trash|"
    r"piece of (?:junk|garbage|trash))\b"
    r"|\b(?:stupid|useless|dumb|idiot|moron|worthless|pathetic)\s+(?:robot|machine|bot|computer|ai|thing)\b")
_OWN = re.compile(r"\b(?:my|mine|our)\b")
_BULK = re.compile(r"\b(?:all|every\w*|each|other|others|else|their|his|her|whole)\b")


@dataclass(frozen=True)
class Verdict:
    kind: str | None  # "injection" | "abuse" | None (an ordinary turn)
    reason: str = ""  # the pattern or nearest example that decided it
    score: float = 0.0  # similarity to the nearest attack (0 when patterns decided or no model)

    @property
    def flagged(self) -> bool:
        return self.kind is not None


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").split())


def by_patterns(text: str) -> Verdict:
    """The deterministic half: abuse first (an abusive injection is answered as abuse), then injection."""
    t = _normal(text)
    for pattern, kind in ((_PROFANITY, "abuse"), (_INSULT, "abuse")):
        m = pattern.search(t)
        if m:
            return Verdict(kind, f"pattern: {m.group(0)!r}")
    for pattern in _INJECTION:
        m = pattern.search(t)
        if m:
            return Verdict("injection", f"pattern: {m.group(0)!r}")
    return Verdict(None)


class InputClassifier:
    """Patterns, then similarity to the example attacks once the encoder is loaded."""

    def __init__(self, encoder_factory: Callable[[], SentenceEncoder] | None = None, *,
                 similarity: float = SIMILARITY, lead: float = LEAD, semantic: bool = True,
                 attacks: Sequence[str] = ATTACKS, tasks: Sequence[str] = TASKS) -> None:
        self.similarity, self.lead = similarity, lead
        self._factory = encoder_factory or _shared_encoder
        self._semantic = semantic
        self._attacks, self._tasks = tuple(attacks), tuple(tasks)
        self._encoder: SentenceEncoder | None = None
        self._vectors: tuple[np.ndarray, np.ndarray] | None = None
        self._loading = False
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._vectors is not None

    def warm_up(self) -> bool:
        """Loads the encoder and embeds the examples (blocking); False without the model."""
        if not self._semantic:
            return False
        with self._lock:
            if self._vectors is None:
                try:
                    encoder = self._factory()
                    vectors = (encoder.encode(list(self._attacks)), encoder.encode(list(self._tasks)))
                except Exception as exc:  # ModelUnavailable, or a broken install: patterns only
                    log.warning("the input guard reads turns by patterns only: %s", exc)
                    self._semantic = False
                    return False
                self._encoder, self._vectors = encoder, vectors
        return True

    def warm_up_in_background(self) -> None:
        """Starts loading once; turns before it is ready are read by patterns (a call never waits)."""
        with self._lock:
            if self._loading or self._vectors is not None or not self._semantic:
                return
            self._loading = True
        threading.Thread(target=self.warm_up, name="input-guard-warm-up", daemon=True).start()

    def classify(self, text: str) -> Verdict:
        """Blocking (the encoder runs here): call it off the event loop."""
        verdict = by_patterns(text)
        if verdict.flagged or not text.strip():
            return verdict
        if self._vectors is None or self._encoder is None:
            self.warm_up_in_background()
            return verdict
        return self.by_similarity(text)

    def by_similarity(self, text: str) -> Verdict:
        assert self._encoder is not None and self._vectors is not None
        vector = self._encoder.encode([text])[0]
        attacks, tasks = self._vectors
        to_attack, to_task = attacks @ vector, tasks @ vector
        best = int(to_attack.argmax())
        score, lead = float(to_attack[best]), float(to_attack[best] - to_task.max())
        # "Delete my booking" sits near "Delete all the bookings": a turn about the caller's own business
        # that names no one else's is ordinary unless a pattern said otherwise.
        own = _OWN.search(_normal(text)) is not None and _BULK.search(_normal(text)) is None
        if score >= self.similarity and lead >= self.lead and not own:
            return Verdict("injection", f"like {self._attacks[best]!r}", score)
        return Verdict(None, score=score)


def _shared_encoder() -> SentenceEncoder:
    from cells.nlu.embeddings import get_encoder

    return get_encoder()
