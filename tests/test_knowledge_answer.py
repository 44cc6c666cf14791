"""The knowledge-answer module: a free question is answered from the right passage of the demo clinic's
real files (real MiniLM, the service's chunker and scoring, in memory), a question the files do not
cover is refused with an offer, a slow or broken search costs an apology and never a guess, and the
threshold decides at its exact value."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cells.contract.knowledge import KnowledgeAnswer, KnowledgeHit
from cells.dialogue.knowledge_answer import (
    KnowledgeAnswers,
    Offers,
    answer_question,
    is_question,
    reply_from,
    speakable,
    spoken_answer,
)
from cells.knowledge.local import LocalKnowledgeSearch
from cells.knowledge.scoring import answer_from

DEMO = Path(__file__).resolve().parents[1] / "cells" / "launcher" / "demo_knowledge"


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> LocalKnowledgeSearch:
    search = LocalKnowledgeSearch(sorted(DEMO.glob("clinic*")), cache_dir=tmp_path_factory.mktemp("vectors"))
    assert search.load().chunks > 10
    return search


def ask(search: object, question: str, **kw: object) -> object:
    return asyncio.run(answer_question(search, question, budget_s=30.0, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(("question", "source", "words"), [
    ("Is there wifi in the waiting room?", "clinic_faq.csv", ("free wifi",)),
    ("Do you do home visits?", "clinic_faq.csv", ("no", "home visits")),
    ("How much does a porcelain crown cost?", "clinic.md > Bright Smile Dental > Treatments and prices",
     ("690 dollars",)),
    ("Do you take MetLife insurance?",
     "clinic.md > Bright Smile Dental > Payment and insurance", ("metlife",)),
])
def test_a_covered_question_is_answered_from_the_right_passage(clinic: LocalKnowledgeSearch, question: str,
                                                                source: str, words: tuple[str, ...]) -> None:
    reply = ask(clinic, question)
    assert reply.outcome == "answer", reply
    assert reply.source == source
    for w in words:
        assert w in reply.text.lower()
    assert "Q:" not in reply.text and "A:" not in reply.text  # the answer part of an FAQ pair only
    assert len(reply.text.split()) <= 45  # one or two sentences, not the chunk
    assert reply.passages and reply.score is not None and reply.score >= 0.35


@pytest.mark.parametrize("question", ["Do you sell gift cards?", "Do you have a vending machine?",
                                      "Do you treat cats?"])
def test_a_question_the_files_do_not_cover_gets_i_dont_know_and_an_offer(clinic: LocalKnowledgeSearch,
                                                                         question: str) -> None:
    reply = ask(clinic, question)
    assert reply.outcome == "unknown"
    assert "don't know" in reply.text and "message" in reply.offer and "put you through" in reply.offer
    assert reply.said == f"{reply.text} {reply.offer}"
    assert reply.passages == ()  # nothing the agent may state as fact


def test_the_offer_is_only_what_the_agent_can_do(clinic: LocalKnowledgeSearch) -> None:
    reply = ask(clinic, "Do you sell gift cards?", offers=Offers(message=False, transfer=True))
    assert "put you through" in reply.offer and "message" not in reply.said


class SlowSearch:
    def __init__(self) -> None:
        self.cancelled = False

    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


class BrokenSearch:
    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        raise ConnectionError("no responders")


def test_past_the_budget_the_agent_says_it_cannot_look_it_up_and_offers() -> None:
    slow = SlowSearch()
    reply = asyncio.run(answer_question(slow, "Is there wifi?", budget_s=0.05))
    assert reply.outcome == "unavailable" and slow.cancelled  # the search was stopped, not left running
    assert "can't look that up" in reply.text and "put you through" in reply.offer
    broken = asyncio.run(answer_question(BrokenSearch(), "Is there wifi?", budget_s=5))
    assert broken.outcome == "unavailable"
    # The NATS search answers "unavailable" in its own way (an error in the answer): the same line.
    failed = reply_from(KnowledgeAnswer.unavailable("NoRespondersError"), "Is there wifi?")
    assert failed.outcome == "unavailable" and not failed.known


FAQ = "Q: Is there wifi? A: Yes: free wifi in the waiting room."


def _hit(score: float, text: str = FAQ) -> KnowledgeHit:
    return KnowledgeHit(text, score, "d1", "faq.csv")


def test_the_threshold_decides_at_its_exact_value() -> None:
    at = answer_from([_hit(0.35)], [_hit(0.35)], 0.35, 1.0)
    below = answer_from([_hit(0.3499)], [_hit(0.3499)], 0.35, 1.0)
    assert reply_from(at, "wifi?").outcome == "answer"
    assert reply_from(below, "wifi?").outcome == "unknown"
    assert reply_from(answer_from([], [], 0.35, 1.0), "wifi?").outcome == "unknown"  # an empty base


def test_phone_phrasing() -> None:
    assert spoken_answer(_hit(0.9), "wifi?") == "Yes, free wifi in the waiting room."
    row = KnowledgeHit("Treatment: White filling; Price: from $140; Time: 45 minutes", 0.6, "d", "clinic.md",
                       "Prices")
    assert spoken_answer(row, "how much is a filling") == (
        "White filling: price from 140 dollars, time 45 minutes.")
    para = KnowledgeHit("We accept cash and cards. Payment is due on the day. We are in network with "
                        "MetLife.", 0.5, "d", "clinic.md")
    assert spoken_answer(para, "do you take metlife") == "We are in network with MetLife."
    assert speakable("Open 8 am to 5:30 pm, late check-out until 13:00 costs $30.50; email a@b.example") == (
        "Open 8 a.m. to 5:30 p.m., late check-out until 1 p.m. costs 30 dollars 50; "
        "email a at b dot example.")
    assert speakable("Dr Shah: 12 pm, £1 & $0.50") == "Doctor Shah: noon, 1 pound and 50 cents."


def test_which_turns_are_questions() -> None:
    for text in ("Is there wifi in the waiting room?", "um do you sell gift cards",
                 "quick question, can I park", "I was wondering whether you take MetLife"):
        assert is_question(text), text
    for text in ("I'd like to book a cleaning", "my name is Ann Lee", "tuesday at ten"):
        assert not is_question(text), text


class CountingSearch:
    def __init__(self, answer: KnowledgeAnswer) -> None:
        self.answer, self.calls = answer, 0

    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        self.calls += 1
        return self.answer


def test_a_replayed_turn_finds_its_reply_again_and_misses_are_recorded() -> None:
    search = CountingSearch(KnowledgeAnswer.unavailable("timeout"))
    answers = KnowledgeAnswers(search)
    with answers.collecting() as missed:
        assert answers.lookup("Is there wifi?") is None
    assert missed == {"is there wifi?"}
    assert answers.lookup("Is there wifi?") is None  # outside a replay nothing is collected
    asyncio.run(answers.fetch(["Is there wifi?"]))
    first = answers.lookup("is there  WIFI?")
    assert first is not None and first.outcome == "unavailable"
    # The index recovers, but the turn that failed stays failed for its call's replays: one search only.
    search.answer = answer_from([_hit(0.9)], [_hit(0.9)], 0.35, 1.0)
    asyncio.run(answers.fetch(["Is there wifi?"]))
    assert answers.lookup("Is there wifi?") == first and search.calls == 1
