"""Answering a caller's free question from the agent's knowledge: retrieve, decide, phrase for the phone.

Any brain uses it (the clinic's rules, another vertical's, the LLM path for its prompt); nothing here
knows a business. Given a caller's turn it asks the agent's `KnowledgeSearch` (its tenant's and agent's
chunks: in memory for the embedded worker, over NATS in a cell) and returns one of three replies:

* `answer`: the best chunk scored at or above the threshold; the reply is one or two sentences of it,
  the answer part of an FAQ pair, the row of a table, the sentences of a paragraph that share the most
  words with the question, written so eSpeak says prices, times and addresses right.
* `unknown`: below the threshold. The agent says it does not know and offers a message or a transfer;
  it never guesses.
* `unavailable`: the search failed or passed the latency budget. The agent says it cannot look that up
  now and makes the same offer.

Latency budget: `ANSWER_BUDGET_S` (300 ms, the contract's) for embedding the question and searching,
enforced here with a timeout whatever the search does. Measured on this machine: ~20-30 ms in memory
(`autospeak bench knowledge` prints it), plus a NATS round trip and a pgvector query in a cell.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from cells.contract.knowledge import LATENCY_BUDGET_S, KnowledgeAnswer, KnowledgeHit, KnowledgeSearch
from cells.knowledge.lexical import tokens

ANSWER_BUDGET_S: Final = LATENCY_BUDGET_S
MAX_WORDS: Final = 40
"""An answer's length on the phone: past ~40 words a caller stops listening (two short sentences)."""
RETRY_UNAVAILABLE_S: Final = 300.0
"""How long a question whose search failed keeps that outcome in the cache (see `KnowledgeAnswers`)."""

_T = TypeVar("_T")
Outcome = Literal["answer", "unknown", "unavailable"]
_MISSES: ContextVar[set[str] | None] = ContextVar("knowledge_misses", default=None)


@dataclass(frozen=True)
class Offers:
    """What the agent can do for a question it cannot answer."""

    message: bool = True
    transfer: bool = True

    def sentence(self) -> str:
        if self.message and self.transfer:
            return "I can take a message for the team, or put you through to someone who can help."
        if self.transfer:
            return "I can put you through to someone who can help."
        if self.message:
            return "I can take a message for the team and someone will get back to you."
        return "Please call back during opening hours and the team will help you."


@dataclass(frozen=True)
class KnowledgeReply:
    outcome: Outcome
    text: str  # the answer, or the apology ("I'm sorry, I don't know that ...")
    offer: str = ""  # after an apology: what the agent can do instead (`Offers.sentence`)
    source: str = ""  # "clinic_faq.csv" or "clinic.md > Payment and insurance": where the answer came from
    score: float | None = None
    elapsed_ms: float = 0.0
    passages: tuple[str, ...] = field(default=())  # the retrieved text the answer may state as fact

    @property
    def known(self) -> bool:
        return self.outcome == "answer"

    @property
    def said(self) -> str:
        """The whole reply: the answer, or the apology with the offer."""
        return f"{self.text} {self.offer}" if self.offer else self.text


REFUSAL: Final = "I'm sorry, I don't know that, and I'd rather not guess."
UNAVAILABLE: Final = "I'm sorry, I can't look that up right now."


async def retrieve(search: KnowledgeSearch, question: str, *, budget_s: float = ANSWER_BUDGET_S,
                   top_k: int = 3) -> KnowledgeAnswer:
    """The search's answer within the budget; past it, or on any failure, an unavailable answer."""
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(search.search(question, top_k=top_k), budget_s)
    except TimeoutError:
        return KnowledgeAnswer.unavailable("timeout", (time.perf_counter() - started) * 1000)
    except Exception as exc:  # a broken search must cost the caller an apology, never the call
        return KnowledgeAnswer.unavailable(type(exc).__name__, (time.perf_counter() - started) * 1000)


def is_known(answer: KnowledgeAnswer) -> bool:
    """The search ran and its cosine-nearest chunk reached the threshold (`scoring.answer_from` decides;
    the hits are re-ranked, so the first of them need not be the nearest)."""
    return answer.error is None and answer.known and bool(answer.hits)


async def answer_question(search: KnowledgeSearch, question: str, *, offers: Offers = Offers(),
                          budget_s: float = ANSWER_BUDGET_S) -> KnowledgeReply:
    answer = await retrieve(search, question, budget_s=budget_s)
    return reply_from(answer, question, offers)


def reply_from(answer: KnowledgeAnswer, question: str, offers: Offers = Offers()) -> KnowledgeReply:
    passages = tuple(h.text for h in answer.hits)
    if answer.error is not None:
        return KnowledgeReply("unavailable", UNAVAILABLE, offers.sentence(), elapsed_ms=answer.elapsed_ms)
    top = answer.hits[0].score if answer.hits else None
    if not is_known(answer):
        return KnowledgeReply("unknown", REFUSAL, offers.sentence(), score=top, elapsed_ms=answer.elapsed_ms)
    best = answer.best
    assert best is not None
    return KnowledgeReply("answer", spoken_answer(best, question), "", source_of(best), best.score,
                          answer.elapsed_ms, passages)


def source_of(hit: KnowledgeHit) -> str:
    return f"{hit.document_title} > {hit.section}" if hit.section else hit.document_title


# --- phrasing ----------------------------------------------------------------------------------------

_FAQ: Final = re.compile(r"^\s*Q:\s*(?P<q>.*?)\s+A:\s*(?P<a>.+)$", re.S)
_SENTENCE: Final = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_ROW_PAIR: Final = re.compile(r"^\s*(?P<k>[^:;]{1,40}):\s*(?P<v>.+?)\s*$")


def _stems(text: str) -> set[str]:
    """Words cut to five letters: 'parking' meets 'park', 'instalments' meets 'instalment'."""
    return {t[:5] for t in tokens(text)}


def _row_sentence(text: str) -> str:
    """'Treatment: Porcelain crown; Price: $690; Time: two visits' -> 'Porcelain crown: price $690,
    time two visits.' (the first column names the thing, the others describe it)."""
    pairs = [m.groups() for part in text.split(";") if (m := _ROW_PAIR.match(part))]
    if len(pairs) < 2:
        return text
    (_, name), rest = pairs[0], pairs[1:]
    # Short values read as "price $690"; a description reads better as a sentence of its own.
    short = [f"{k.strip().lower()} {v}" for k, v in rest if len(v.split()) <= 3]
    long = [v.rstrip(".") + "." for _, v in rest if len(v.split()) > 3]
    return " ".join([f"{name}: {', '.join(short)}." if short else f"{name}.", *long])


def _best_sentences(text: str, question: str) -> str:
    """One or two sentences of a paragraph: those sharing most words with the question, in their order;
    the first sentence when none does (the match was by meaning alone)."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()]
    if len(sentences) <= 1:
        return text.strip()
    asked = _stems(question)
    overlap = [len(asked & _stems(s)) for s in sentences]
    ranked = sorted(range(len(sentences)), key=lambda i: (-overlap[i], i))
    chosen = [ranked[0]]
    second = ranked[1]
    if overlap[second] > 0 and len(f"{sentences[chosen[0]]} {sentences[second]}".split()) <= MAX_WORDS:
        chosen.append(second)
    return " ".join(sentences[i] for i in sorted(chosen))


def spoken_answer(hit: KnowledgeHit, question: str) -> str:
    """The best chunk as a short reply a caller can follow."""
    faq = _FAQ.match(hit.text)
    if faq:
        text = _best_sentences(faq.group("a"), question)
    elif hit.text.count(";") >= 1 and _ROW_PAIR.match(hit.text.split(";")[0]):
        text = _row_sentence(hit.text)
    else:
        text = _best_sentences(hit.text, question)
    return speakable(text)


_CURRENCY: Final = {"$": ("dollar", "dollars"), "£": ("pound", "pounds"), "€": ("euro", "euros"),
                    "₹": ("rupee", "rupees")}
_MONEY: Final = re.compile(r"([$£€₹])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{2}))?")
_PRICED_NOUN: Final = re.compile(r"\s(?:fee|charge|deposit|surcharge|fine|discount|voucher|credit|bonus|"
                                 r"supplement|note|bill|minimum)\b")
_CLOCK: Final = re.compile(r"\b(\d{1,2})(?:[:.](\d{2}))?\s?([ap])\.?\s?m\b\.?", re.I)
_H24: Final = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b(?!\s?[ap]\.?m)", re.I)
_EMAIL: Final = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_URL: Final = re.compile(r"\bhttps?://(?:www\.)?([\w.-]+)\S*")
_REPLACE: Final = ((re.compile(r"\bDr\.?\s"), "Doctor "), (re.compile(r"\be\.g\.\s?"), "for example "),
                   (re.compile(r"\bi\.e\.\s?"), "that is "), (re.compile(r"\s?&\s?"), " and "),
                   (re.compile(r"(\d)\s?%"), r"\1 percent"), (re.compile(r"[*_`#]+"), ""),
                   (re.compile(r"^\s*-\s+"), ""), (re.compile(r"\b(Yes|No):\s"), r"\1, "))


def _money(m: re.Match[str]) -> str:
    one, many = _CURRENCY[m.group(1)]
    whole = m.group(2).replace(",", "")
    before_noun = _PRICED_NOUN.match(m.string, m.end()) is not None  # "a $30 fee": "a 30 dollar fee"
    out = f"{whole} {one if whole == '1' or before_noun else many}"
    cents = m.group(3)
    if whole == "0" and cents:
        return f"{int(cents)} cents" if m.group(1) in "$€" else f"{int(cents)} pence"
    return f"{out} {int(cents)}" if cents and cents != "00" else out


def _clock(m: re.Match[str]) -> str:
    hour, minute, half = int(m.group(1)), m.group(2), m.group(3).lower()
    if hour == 12 and half == "p" and minute in (None, "00"):
        return "noon"
    return f"{hour}{':' + minute if minute and minute != '00' else ''} {half}.m."


def _h24(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), m.group(2)
    if hour == 12 and minute == "00":
        return "noon"
    half = "a.m." if hour < 12 else "p.m."
    return f"{hour % 12 or 12}{'' if minute == '00' else ':' + minute} {half}"


def speakable(text: str) -> str:
    """Written text as eSpeak should say it: '$2400' -> '2400 dollars', '8 am' -> '8 a.m.',
    '17:30' -> '5:30 p.m.', 'records@x.example' -> 'records at x dot example', 'Dr' -> 'Doctor'."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)} at {m.group(2).replace('.', ' dot ')}", text)
    text = _URL.sub(lambda m: m.group(1).rstrip(".").replace(".", " dot "), text)
    text = _MONEY.sub(_money, text)
    text = _CLOCK.sub(_clock, text)
    text = _H24.sub(_h24, text)
    for pattern, replacement in _REPLACE:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    if text and text[-1] not in ".!?":
        text += "."
    return text[0].upper() + text[1:] if text else text


# --- which turns are questions -------------------------------------------------------------------------

_ASKS: Final = frozenset(
    "do does did is are was were can could will would what whats how hows where wheres when which who "
    "whos why may should have has am".split())
_FILLERS: Final = frozenset("hi hello hey um uh er so and also oh okay ok well yes yeah right just "
                            "quick one question".split())
_ASK_PHRASES: Final = ("i was wondering", "im wondering", "id like to know", "i would like to know",
                       "tell me about", "tell me if", "do you know", "can you tell me", "i wanted to ask",
                       "i want to know", "is it true")


def is_question(text: str) -> bool:
    """A turn that asks something: a question mark, a question word or auxiliary first (after fillers
    like 'hi, um, quick question'), or a phrase such as 'I was wondering'."""
    if "?" in text:
        return True
    words = re.sub(r"[^a-z0-9 ]+", "", text.lower().replace("'", "")).split()
    lead = next((w for w in words if w not in _FILLERS), "")
    joined = " ".join(words)
    return lead in _ASKS or any(p in joined for p in _ASK_PHRASES)


# --- replies a replayed history finds again -----------------------------------------------------------


class KnowledgeAnswers:
    """The knowledge replies of one agent's brain, by question, for brains that rebuild their state by
    replaying the whole history on every turn (the clinic's rules do).

    The brain `fetch`es a question once (async, within the budget) and every later replay `lookup`s the
    same reply, so a turn answered "I don't know" stays that turn whatever the index says later. The
    questions a replay needed but nobody fetched are `collecting`'s (a call resumed on another worker
    replays turns this worker never answered); the brain fetches those and replays again.
    A failed search is kept `RETRY_UNAVAILABLE_S`, long enough for the call that met it, so another call
    asking the same later gets a fresh search.
    """

    def __init__(self, search: KnowledgeSearch, *, offers: Offers = Offers(),
                 budget_s: float = ANSWER_BUDGET_S, max_entries: int = 1024) -> None:
        self.search, self.offers, self.budget_s = search, offers, budget_s
        self.max_entries = max_entries
        self._replies: OrderedDict[str, tuple[KnowledgeReply, float]] = OrderedDict()

    def warm_up(self) -> None:
        """Loads an in-memory index now (blocking), so that no caller's first question pays for it."""
        load = getattr(self.search, "load", None)
        if callable(load):
            load()

    @staticmethod
    def _key(question: str) -> str:
        return " ".join(question.lower().split())

    @contextmanager
    def collecting(self) -> Iterator[set[str]]:
        """The questions `lookup` misses inside the block, for this task only: one brain serves many
        calls at once, and each replay must fetch its own."""
        missed: set[str] = set()
        token = _MISSES.set(missed)
        try:
            yield missed
        finally:
            _MISSES.reset(token)

    def lookup(self, question: str) -> KnowledgeReply | None:
        """The reply fetched for `question`; None (and a recorded miss) when none was."""
        key = self._key(question)
        entry = self._replies.get(key)
        if entry is None:
            missed = _MISSES.get()
            if missed is not None:
                missed.add(key)
            return None
        self._replies.move_to_end(key)
        return entry[0]

    def grounding(self, question: str) -> tuple[str, ...]:
        """The passages (and the spoken answer made of them) of a question answered from the knowledge."""
        entry = self._replies.get(self._key(question))
        if entry is None or not entry[0].known:
            return ()
        return (*entry[0].passages, entry[0].text)

    async def fetch(self, questions: Iterable[str]) -> None:
        """Searches the questions not held yet (concurrently, each within the budget)."""
        now = time.monotonic()
        wanted: dict[str, str] = {}  # key -> the question as said (the first of its spellings)
        for q in questions:
            key = self._key(q)
            entry = self._replies.get(key)
            stale = (entry is not None and entry[0].outcome == "unavailable"
                     and now - entry[1] > RETRY_UNAVAILABLE_S)
            if key and (entry is None or stale):
                wanted.setdefault(key, q.strip())
        replies = await asyncio.gather(*(answer_question(self.search, q, offers=self.offers,
                                                         budget_s=self.budget_s) for q in wanted.values()))
        for key, reply in zip(wanted, replies, strict=True):
            self._replies[key] = (reply, now)
        while len(self._replies) > self.max_entries:
            self._replies.popitem(last=False)


async def replay_with_answers(knowledge: KnowledgeAnswers | None, replay: Callable[[], _T]) -> _T:
    """A rule brain's replay of the call, after fetching the knowledge replies its questions missed: the
    replay looks them up (and records the misses), they are fetched once, and the replay runs again to find
    them; every later replay finds them the same way."""
    if knowledge is None:
        return replay()
    with knowledge.collecting() as missed:
        replayed = replay()
    if not missed:
        return replayed
    await knowledge.fetch(missed)
    return replay()
