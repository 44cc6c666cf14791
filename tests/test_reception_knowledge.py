"""The clinic's rules answer free questions from the clinic's knowledge files (real MiniLM, in memory):
a covered question is answered from its passage, an uncovered one gets "I don't know" and a transfer
offer the caller can take, a failed search says so, and bookings, hours and prices stay with the rules.
The reply of each turn replays alike, and a brain that never saw the call (a resumed call) fetches it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cells.agents.reception.policy import ReceptionPolicy
from cells.contract.knowledge import KnowledgeAnswer
from cells.knowledge.local import LocalKnowledgeSearch
from tests.reception_harness import NOW, FakeCall

DEMO = Path(__file__).resolve().parents[1] / "cells" / "launcher" / "demo_knowledge"


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> LocalKnowledgeSearch:
    search = LocalKnowledgeSearch(sorted(DEMO.glob("clinic*")), cache_dir=tmp_path_factory.mktemp("vectors"))
    search.load()
    return search


def policy(knowledge: object) -> ReceptionPolicy:
    p = ReceptionPolicy(clock=lambda: NOW, knowledge=knowledge)  # type: ignore[arg-type]
    assert p.knowledge is not None
    p.knowledge.budget_s = 30.0  # no loaded test machine misses it; the budget is tested on its own
    return p


def test_a_covered_question_is_answered_from_the_knowledge(knowledge: LocalKnowledgeSearch) -> None:
    call = FakeCall(policy(knowledge))
    reply = call.say("Is there wifi in the waiting room?")
    assert "free wifi" in reply and "anything else" in reply
    reply = call.say("Do you take MetLife insurance?")  # once the front desk's question, now answered
    assert "MetLife" in reply and "front desk" not in reply
    assert not call.tool_log


def test_an_uncovered_question_gets_i_dont_know_and_a_transfer_the_caller_can_take(
        knowledge: LocalKnowledgeSearch) -> None:
    call = FakeCall(policy(knowledge))
    reply = call.say("Do you sell gift cards?")
    assert "don't know" in reply and "transfer you" in reply
    call.say("yes please")
    assert call.called("transfer_to_human")
    declined = FakeCall(policy(knowledge))
    declined.say("Do you sell gift cards?")
    assert "anything else" in declined.say("no thanks")
    assert not declined.tool_log


class Failing:
    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")


def test_a_search_past_its_budget_is_an_apology_and_an_offer() -> None:
    p = ReceptionPolicy(clock=lambda: NOW, knowledge=Failing())
    assert p.knowledge is not None
    p.knowledge.budget_s = 0.05
    reply = FakeCall(p).say("Is there wifi in the waiting room?")
    assert "can't look that up" in reply and "transfer you" in reply


def test_tasks_and_calendar_facts_stay_with_the_rules(knowledge: LocalKnowledgeSearch) -> None:
    call = FakeCall(policy(knowledge))
    assert "What day" in call.say("Can I book a cleaning?")
    facts = FakeCall(policy(knowledge))
    assert "180 dollars" in facts.say("How much is a filling?")  # the calendar's price, not the file's
    assert "Saturday" in facts.say("What are your opening hours?")
    assert "42 Harbor Street" in facts.say("Where's your office?")  # the address stays the calendar's
    assert "park free" in facts.say("Where can I park?")  # parking only the file knows


@pytest.mark.parametrize("question", ["How much is a tooth extraction?",
                                      "How much does it cost to take a tooth out?"])
def test_a_price_only_the_files_know_comes_from_the_files(knowledge: LocalKnowledgeSearch,
                                                          question: str) -> None:
    """The calendar lists no extraction; its generic price list would not answer the question."""
    reply = FakeCall(policy(knowledge)).say(question)
    assert "Extraction of a tooth" in reply and "120 dollars" in reply and "For example" not in reply


@pytest.mark.parametrize("question", ["What are your prices?", "How long does an extraction take?"])
def test_a_price_question_the_files_answer_about_something_else_gets_the_calendars_list(
        knowledge: LocalKnowledgeSearch, question: str) -> None:
    """Nothing named, or a nearest passage about another treatment (whitening's visits for an
    extraction's length): the calendar's own list, never a row that merely sits nearby."""
    reply = FakeCall(policy(knowledge)).say(question)
    assert reply.startswith("For example") and "crown" not in reply and "trays" not in reply


def test_without_knowledge_the_rules_answer_as_before() -> None:
    reply = FakeCall(ReceptionPolicy(clock=lambda: NOW)).say("Do you sell gift cards?")
    assert "don't know" not in reply


def test_each_turn_replays_alike_and_a_resumed_brain_fetches_what_it_never_saw(
        knowledge: LocalKnowledgeSearch) -> None:
    call = FakeCall(policy(knowledge))
    call.say("Do you sell gift cards?")
    assert call.policy.state(call.messages).expecting == "transfer"
    # Another worker's brain takes the call over: it has no reply cached, fetches it and carries on.
    call.policy = policy(knowledge)
    call.say("yes")
    assert call.called("transfer_to_human")


def test_a_question_mid_booking_is_answered_and_the_booking_goes_on(knowledge: LocalKnowledgeSearch) -> None:
    call = FakeCall(policy(knowledge))
    call.say("I'd like a cleaning on Friday at 11.", "Mark Brown.")
    reply = call.say("What's your cancellation policy?")
    assert "24 hours" in reply and reply.endswith("phone number to reach you?")
    reply = call.say("555 8261.")
    assert "Shall I book it?" in reply
    reply = call.say("Do you take MetLife insurance?")  # at the read-back: answered, then read back again
    assert "MetLife" in reply and reply.endswith("Shall I book it?") and not call.called("create_booking")
    call.say("Yes.")
    assert call.called("create_booking") and not call.called("cancel_booking")
    assert not call.called("transfer_to_human")
