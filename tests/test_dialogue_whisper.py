"""Callers as Whisper writes them (capitals, punctuation, digits, '11 a.m.', '555-0142'): whole conversations
must leave the calendar exactly as the caller agreed, and single turns must yield the slots they state.

The cases live in evals/dialogue (conversations.py, phrasings.py); `python -m evals.dialogue.paraphrases`
prints the same pass rates.
"""

from __future__ import annotations

import pytest

from cells.agents.reception.clinic import default_clinic
from cells.agents.reception.intents import understand
from evals.dialogue.conversations import CONVERSATIONS, FRESH, Conversation
from evals.dialogue.harness import NOW, FakeCall
from evals.dialogue.paraphrases import check_phrasing, run_conversation
from evals.dialogue.phrasings import PHRASINGS, Phrasing


@pytest.mark.parametrize("conversation", CONVERSATIONS + FRESH, ids=[c.id for c in CONVERSATIONS + FRESH])
def test_conversation(conversation: Conversation) -> None:
    _, problems = run_conversation(conversation)
    assert not problems, problems


@pytest.mark.parametrize("phrasing", PHRASINGS, ids=[p.text[:40] for p in PHRASINGS])
def test_phrasing(phrasing: Phrasing) -> None:
    assert not check_phrasing(phrasing)


@pytest.mark.parametrize("number", [
    "It's five five five for one two one three.", "Five five five, zero one four two.", "555-0142.",
    "Uh, five five five, to one, one two.", "07700 900123, thank you.", "five five five for one",
    "This is Mark's number, 555-0142.", "I'm on 07700 900123 at work.", "555-0142, but call me after 5.",
    "It's 07700 900123, best in the evening.", "Call me in the evening, I'm at work.",
    "555-0142, best after 5 p.m.", "555-0142. Reach me at 4pm.",
])
def test_the_phone_numbers_turn_keeps_the_agreed_date_time_and_name(number: str) -> None:
    call = FakeCall()
    call.say("I'd like a cleaning on Tuesday at 11 a.m.", "My name is Anna Kowalski.")
    before = call.policy.state(call.messages)
    assert (before.date, before.time, before.expecting) == ("2026-03-03", "11:00", "phone")
    call.say(number)
    after = call.policy.state(call.messages)
    assert (after.date, after.time, after.name) == ("2026-03-03", "11:00", "Anna Kowalski")


def test_half_a_phone_number_is_no_time() -> None:
    """The 11:00 -> 13:00 bug: 'for one' inside the digits read as 'at one', i.e. 13:00."""
    u = understand("five five five for one two", NOW.date(), default_clinic(), expecting="phone")
    assert u.time is None and u.date is None


def test_a_refused_booking_writes_nothing() -> None:
    call = FakeCall()
    call.say("I'd like to book a whitening on Friday at 9 a.m.", "Tom Baker.", "No thanks.")
    assert "Shall I book it?" in call.replies[-1]
    call.say("No, actually, never mind. Don't book it.")
    assert call.calendar.bookings() == [] and not call.called("create_booking")
