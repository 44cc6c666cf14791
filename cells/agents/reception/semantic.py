"""Reading a caller's request by meaning as well as by rule: the rules first, the embedding matcher
(cells.nlu.intents) where the rules are silent or only guessed "book" from a noun.

The rule-based reader (intents.understand) is precise on the phrasings it was written for and reads
every slot; on new phrasings it mostly fails in two ways: it finds no intent at all, or it reads a
confident "book" from the word "appointment" in a move or cancel request. So, at an open question
("How can I help you?", "Anything else?") and only there:

* the rules found none of the matcher's intents -> the matcher's intent, when it is confident (score
  >= threshold and ahead of the runner-up by the margin); otherwise nothing, and the policy says it
  did not catch that. A turn that names a service, day or time but no request ("a cleaning on Tuesday
  at nine") the policy takes for a booking, a strong reading: the matcher overrules it only when its
  intent leads "book" by SLOTS_OVERRULE_LEAD ("Till what time can I call you today?" -> hours);
* the rules' only request was a "book" read from a noun ("appointment", "booking") and the matcher is
  confident of another intent -> the matcher's intent replaces it;
* anything else the rules found stands.

Answers to the agent's own questions (a name, a day, a yes) stay with the rules, except the answer to
"What would you like to come in for?": a service the rules' synonym lookup misses there is matched by
meaning against the clinic's services (name and description). Only there: in an open turn that names
no service, generic turns ("I found another dentist, I won't need my booking") score as high against
some description as real service phrasings do, and a wrong service would be read back.

The model loads once per process (`warm_up`, called by the worker before calls arrive); if its package
is missing, the reader logs that once and the brain runs on rules alone. Each turn's text is embedded
once and cached, as the policy replays the whole history on every reply.

BLAS threads: a short turn's matrices are tiny, and OpenBLAS spreading them over the cores costs more
than it gains (on a busy 2-core machine a turn took ~90-440 ms with the default threads, ~13-50 ms with
one; in a worker thread, 10x the CPU). OpenBLAS's thread count is per process and changes only from the
main thread, so it cannot be set for the encoder alone: `pin_blas_to_one_thread` sets it for the
process (threadpoolctl), or OPENBLAS_NUM_THREADS=1 in the worker's environment does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cells.dialogue.catalogue import Catalogue
from cells.nlu.embeddings import ModelUnavailable

if TYPE_CHECKING:
    import numpy as np

    from cells.agents.reception.intents import Understanding
    from cells.nlu.intents import IntentMatch, IntentMatcher

log = logging.getLogger(__name__)

# The questions after which a turn states a new request rather than answering for a slot.
OPEN_QUESTIONS = (None, "intent", "anything_else")
_CACHE_SIZE = 512
# How far the matcher's intent must lead its own "book" score to overrule the booking the policy reads
# in a turn of bare slots. Chosen on the eval sets (python -m evals.nlu.intents, the dialogue tests):
# bare bookings the matcher misread led "book" by 0.02-0.08 ("cleaning tuesday at nine" -> move, "Friday
# at 3pm?" -> hours), questions naming a day or a service by 0.12-0.28.
SLOTS_OVERRULE_LEAD = 0.1
# Intents that hand the call to someone or end it act at once, with no read-back: taken from the matcher
# alone they need a clearly stronger match than the general threshold (an off-topic "Can you order me a
# taxi?" scored 0.37 for a person and would have transferred the call).
DECISIVE_MIN_SCORE = {"human": 0.5, "front_desk": 0.5, "goodbye": 0.5}


_pinned: list[object] = []  # the limiter that holds the setting, once set
_pin_lock = threading.Lock()


def pin_blas_to_one_thread() -> bool:
    """Sets the process's BLAS to one thread, once; True when it is (or already was) one thread.

    OpenBLAS keeps one thread count per process and ignores a change asked from any thread but the
    main one (0.3.31, checked by hand), so this cannot be scoped to the encoder's calls: it runs from
    the main thread (the policy's constructor) and stays. Nothing else in a worker process multiplies
    matrices (the speech recogniser runs in its own processes)."""
    with _pin_lock:
        if _pinned:
            return True
        if os.environ.get("OPENBLAS_NUM_THREADS") == "1":
            _pinned.append("env")
            return True
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            log.info("threadpoolctl is not installed: set OPENBLAS_NUM_THREADS=1 for this process, or "
                     "the sentence encoder's small matrices are spread over all cores (slower)")
            return False
        if threading.current_thread() is not threading.main_thread():
            log.info("BLAS threads can only be set from the main thread; set OPENBLAS_NUM_THREADS=1")
            return False
        _pinned.append(ThreadpoolController().limit(limits=1, user_api="blas"))
        return True


@dataclass(frozen=True)
class Reading:
    """One turn as the matcher saw it: its embedding, every intent's score and the matcher's verdict."""
    vector: np.ndarray
    scores: np.ndarray
    match: IntentMatch | None


def combine(rule_intents: set[str], weak_book: bool, match: IntentMatch | None,
            known: Sequence[str], *, lead_over_book: float | None = None) -> set[str]:
    """The intents of a turn at an open question, from the rules' and the matcher's readings.
    `lead_over_book`: for a turn of bare slots (read as a booking), the match's score minus "book"'s."""
    requests = rule_intents & set(known)
    if match is None or match.intent in requests:
        return rule_intents
    if match.score < DECISIVE_MIN_SCORE.get(match.intent, 0.0):
        return rule_intents
    if not requests:
        if lead_over_book is not None and lead_over_book < SLOTS_OVERRULE_LEAD:
            return rule_intents
        return rule_intents | {match.intent}
    if requests == {"book"} and weak_book:
        return (rule_intents - {"book"}) | {match.intent}
    return rule_intents


class SemanticReader:
    """The matcher and the service fallback behind the rule-based reader; rules only without the model."""

    def __init__(self, matcher_factory: Callable[[], IntentMatcher] | None = None) -> None:
        self._factory = matcher_factory or _default_matcher
        self._matcher: IntentMatcher | None = None
        self._unavailable: str | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Reading] = OrderedDict()

    @property
    def available(self) -> bool:
        return self._load() is not None

    def warm_up(self) -> bool:
        """Loads the encoder and embeds the examples now (not in a caller's first turn); False when the
        model is not installed (the brain then reads by rules alone)."""
        return self._load() is not None

    def _load(self) -> IntentMatcher | None:
        if self._matcher is not None or self._unavailable is not None:
            return self._matcher
        with self._lock:
            if self._matcher is None and self._unavailable is None:
                try:
                    self._matcher = self._factory()
                except ModelUnavailable as exc:
                    self._unavailable = str(exc)
                    log.warning("intent matching by meaning is off, the receptionist reads callers by "
                                "rules alone: %s", exc)
        return self._matcher

    def read(self, text: str) -> Reading | None:
        """The turn's embedding and intent match (cached by text); None without the model."""
        matcher = self._load()
        if matcher is None or not text.strip():
            return None
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        row = matcher.score_row(text)
        reading = Reading(row.vector, row.scores, matcher.decide(row.scores))
        with self._lock:
            self._cache[text] = reading
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return reading

    def refine(self, u: Understanding, clinic: Catalogue, expecting: str | None) -> None:
        """Adds what the matcher reads to the rules' understanding of a turn, in place."""
        asks_service = expecting == "service" and u.service is None
        if expecting not in OPEN_QUESTIONS and not asks_service:
            return
        reading = self.read(u.text)
        if reading is None:
            return
        if asks_service:
            u.service = self.service(reading, clinic)
            return
        matcher = self._matcher
        assert matcher is not None
        lead = None
        if reading.match is not None and (u.service or u.date or u.time) and "book" in matcher.intents:
            lead = reading.match.score - float(reading.scores[matcher.intents.index("book")])
        u.intents = combine(u.intents, u.weak_book, reading.match, matcher.intents, lead_over_book=lead)
        u.semantic = reading.match

    def service(self, reading: Reading, clinic: Catalogue) -> str | None:
        from cells.nlu.intents import match_option

        found = match_option("", service_options(clinic), vector=reading.vector)
        return found[0] if found else None


def service_options(clinic: Catalogue) -> Mapping[str, list[str]]:
    """Each service as the clinic describes it: its spoken name and its description."""
    return {s.key: [s.name, *([s.description] if s.description else [])] for s in clinic.services}


def _default_matcher() -> IntentMatcher:
    from cells.nlu.intents import IntentMatcher

    return IntentMatcher.from_file()


_shared: SemanticReader | None = None
_shared_lock = threading.Lock()


def shared_reader() -> SemanticReader:
    """The process's one reader: every agent's policy shares the model and the example embeddings."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SemanticReader()
        return _shared
