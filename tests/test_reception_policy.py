"""Whole conversations through ReceptionPolicy with the real calendar tools, as a call pipeline runs them."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from reception_harness import NOW, FakeCall

from cells.agents.reception.calendar import Calendar, CalendarTools
from cells.agents.reception.policy import ReceptionPolicy
from cells.providers.base import LlmProvider, Message, TextDelta, ToolCall


def converse(lines: list[str], call: FakeCall | None = None) -> FakeCall:
    call = call or FakeCall()
    for line in lines[:-1]:
        call.say(line)
        assert call.called("create_booking") == [], f"booked before the final confirmation (at {line!r})"
    call.say(lines[-1])
    return call


def test_is_an_llm_provider_and_greets() -> None:
    call = FakeCall()
    assert isinstance(call.policy, LlmProvider)
    assert "Bright Smile Dental" in call.greeting and call.greeting.endswith("?")


BOOKINGS = [
    # all-in-one request
    (["hi id like to book a cleaning on tuesday the third at nine thirty", "my name is john smith",
      "five five five two one eight seven", "yes"], ("John Smith", "cleaning", "2026-03-03T09:30")),
    # slot by slot, with a bare time and a bare ordinal
    (["i want to make an appointment", "a checkup", "the fourth", "ten", "its mary jones", "nope", "yeah"],
     ("Mary Jones", "cleaning", "2026-03-04T10:00")),
    # "two p m", weekday, service synonym, yes variants
    (["can i get my teeth whitened", "thursday", "two p m", "anna brown", "five five five oh one four two",
      "that's right"], ("Anna Brown", "whitening", "2026-03-05T14:00")),
    # time first, then date; "half past"; number given with the name
    (["i have a toothache can i come in at half past eleven", "tomorrow",
      "this is david lee my number is five five five one two three four", "correct"],
     ("David Lee", "emergency", "2026-03-03T11:30")),
    # part of day, then a choice among the offered slots
    (["i need a filling next monday morning", "the first one", "peter hall", "skip", "sure"],
     ("Peter Hall", "filling", "2026-03-09T08:00")),
    # a different word order and a month name
    (["march sixth at quarter to ten for a consultation please", "emma white", "no thanks", "yes please"],
     ("Emma White", "consultation", "2026-03-06T09:45")),
    # fourteen hundred, "sounds good"
    (["book me in for a cleaning", "friday", "fourteen hundred", "my name is laura king", "no",
      "sounds good"], ("Laura King", "cleaning", "2026-03-06T14:00")),
    # greeting first, asks what is free, homophone "to p m" for "two p m"
    (["hello is this the dentist", "yes i need to book a cleaning for tuesday", "what times do you have",
      "at to p m", "brian young", "its the same number im calling from", "of course"],
     ("Brian Young", "cleaning", "2026-03-03T14:00")),
    # preference, then a narrower preference, then a bare hour
    (["can you fit me in monday", "cleaning", "morning", "nine", "yeah it's paul martin", "no", "okay"],
     ("Paul Martin", "cleaning", "2026-03-09T09:00")),
    # correction inside the "no" at the read-back
    (["i want to book", "uh a cleaning i guess", "how about thursday", "around two thirty",
      "yeah it's jennifer davis", "five five five three four five six",
      "no that's wrong the time should be ten", "yes"], ("Jennifer Davis", "cleaning", "2026-03-05T10:00")),
    # "as soon as possible" and "the first one"
    (["i need to see the dentist", "it hurts a lot", "as soon as possible", "yeah the first one",
      "kevin white", "no", "yup"], ("Kevin White", "emergency", "2026-03-02T08:30")),
    # a negated weekday, then the right one
    (["cleaning on wednesday not tuesday at ten", "sam hill", "no", "yes"], ("Sam Hill", "cleaning",
                                                                             "2026-03-04T10:00")),
]


@pytest.mark.parametrize(("lines", "expected"), BOOKINGS)
def test_booking_conversations(lines: list[str], expected: tuple[str, str, str]) -> None:
    call = converse(lines)
    assert call.bookings() == [expected]
    assert len(call.called("create_booking")) == 1


def test_readback_is_spoken_before_the_booking() -> None:
    call = FakeCall()
    call.say("i want a cleaning on wednesday at ten")
    call.say("john smith")
    reply = call.say("five five five two one eight seven")
    assert "Wednesday, March 4th at 10 a.m." in reply and "John Smith" in reply and reply.endswith("?")
    assert call.bookings() == []
    assert "all set" in call.say("yes")
    assert call.bookings() == [("John Smith", "cleaning", "2026-03-04T10:00")]


@pytest.mark.parametrize("not_yes", ["hmm", "what", "maybe", "i'm not sure", "uh", ""])
def test_no_booking_without_a_clear_yes(not_yes: str) -> None:
    call = converse(["a cleaning on wednesday at ten", "john smith", "no", not_yes])
    assert call.bookings() == []


def test_correction_at_confirmation() -> None:
    call = converse(["cleaning tuesday at nine", "john smith", "no", "no i said wednesday"])
    assert call.bookings() == []
    assert "Wednesday, March 4th at 9 a.m." in call.messages[-1].content
    call.say("yes")
    assert call.bookings() == [("John Smith", "cleaning", "2026-03-04T09:00")]


def test_no_then_change_the_time() -> None:
    lines = ["cleaning tuesday at nine", "john smith", "no", "no", "the time", "eleven thirty", "yep"]
    call = converse(lines)
    assert call.bookings() == [("John Smith", "cleaning", "2026-03-03T11:30")]


def test_correction_mid_flow_keeps_other_details() -> None:
    call = converse(["i'd like a filling on friday", "actually make it thursday", "three p m", "joe bloggs",
                     "no", "yes"])
    assert call.bookings() == [("Joe Bloggs", "filling", "2026-03-05T15:00")]


def test_taken_slot_offers_alternatives() -> None:
    cal = Calendar(clock=lambda: NOW)
    cal.book("A", "cleaning", datetime(2026, 3, 3, 9, 0))
    cal.book("B", "cleaning", datetime(2026, 3, 3, 9, 30))
    call = FakeCall(calendar=cal)
    reply = call.say("can i book a cleaning tomorrow at nine thirty")
    assert "taken" in reply and "10 a.m." in reply
    call.say("ten works")
    converse(["john smith", "no", "yes"], call)
    assert ("John Smith", "cleaning", "2026-03-03T10:00") in call.bookings()


def test_closed_day_offers_next_opening() -> None:
    call = FakeCall()
    reply = call.say("i need a cleaning on sunday")
    assert "closed" in reply and "Monday, March 9th" in reply
    converse(["the second one", "amy green", "no", "okay"], call)
    assert len(call.bookings()) == 1 and call.bookings()[0][2].startswith("2026-03-09")


def test_questions_mid_booking_keep_the_flow() -> None:
    call = FakeCall()
    call.say("i want to book a whitening")
    reply = call.say("how much does that cost")
    assert "350 dollars" in reply and reply.endswith("What day works for you?")
    reply = call.say("what are your hours on saturday")
    assert "9 a.m. to 1 p.m." in reply
    assert "Harbor Street" in call.say("where are you located")
    converse(["saturday at ten", "lisa clark", "no", "yes"], call)
    assert call.bookings() == [("Lisa Clark", "whitening", "2026-03-07T10:00")]


@pytest.mark.parametrize(("question", "fragment"), [
    ("what are your hours", "Monday to Wednesday 8 a.m. to 5 p.m."),
    ("are you open on sunday", "closed on Sundays"),
    ("how much is a cleaning", "120 dollars"),
    ("what services do you offer", "whitening"),
    ("do you do fillings", "Yes, we do offer filling"),
    ("where are you", "42 Harbor Street"),
])
def test_information_questions(question: str, fragment: str) -> None:
    reply = FakeCall().say(question)
    assert fragment in reply and reply.endswith("anything else I can help you with?")


def test_move_flow() -> None:
    cal = Calendar(clock=lambda: NOW)
    cal.book("John Smith", "cleaning", datetime(2026, 3, 3, 9, 0))
    call = FakeCall(calendar=cal)
    assert "name" in call.say("hi i need to move my appointment")
    reply = call.say("john smith")
    assert "Tuesday, March 3rd at 9 a.m." in reply
    call.say("can we do thursday at two instead")
    assert call.called("move_booking") == []
    call.say("yes")
    assert call.bookings() == [("John Smith", "cleaning", "2026-03-05T14:00")]


def test_reschedule_with_details_up_front() -> None:
    cal = Calendar(clock=lambda: NOW)
    cal.book("Mary Jones", "filling", datetime(2026, 3, 4, 10, 0))
    call = converse(["this is mary jones i need to reschedule to friday at eleven", "that's right"],
                    FakeCall(calendar=cal))
    assert call.bookings() == [("Mary Jones", "filling", "2026-03-06T11:00")]


def test_cancel_flow_and_decline() -> None:
    cal = Calendar(clock=lambda: NOW)
    cal.book("John Smith", "cleaning", datetime(2026, 3, 3, 9, 0))
    call = FakeCall(calendar=cal)
    call.say("i need to cancel my appointment")
    assert "cancel it" in call.say("it's under john smith")
    call.say("no")
    assert len(call.bookings()) == 1
    call.say("actually yes please cancel my appointment")
    call.say("yeah")
    assert call.bookings() == [] and len(call.called("cancel_booking")) == 1


def test_cancel_unknown_name_then_transfer_offer() -> None:
    call = FakeCall()
    call.say("cancel my appointment please")
    assert "couldn't find" in call.say("john smith")
    reply = call.say("peter parker")
    assert "transfer" in reply
    call.say("yes")
    assert call.called("transfer_to_human")


def test_abort_booking_midway() -> None:
    call = FakeCall()
    call.say("i want a cleaning tomorrow")
    reply = call.say("never mind")
    assert "won't book" in reply
    call.say("no thanks")
    assert call.bookings() == [] and call.ended


def test_garbled_input_reprompts_then_offers_transfer() -> None:
    call = FakeCall()
    call.say("i need a cleaning")
    assert "didn't catch" in call.say("")
    assert call.say("blorp zzz").endswith("What day works for you?")
    reply = call.say("mmm hmm grr")
    assert "transfer" in reply
    call.say("no")  # declined: back to the question it was asking
    assert "name" in call.say("thursday at ten")
    assert call.policy.state(call.messages).date == "2026-03-05"


def test_transfer_on_request() -> None:
    call = FakeCall()
    reply = call.say("can i just talk to a real person")
    assert "transfer" in reply
    assert call.transfer.requests == ["caller asked for a person"]


def test_goodbye_forgets_the_pending_readback() -> None:
    call = converse(["cleaning wednesday at ten", "john smith", "no", "ok bye"])
    assert call.ended
    call.say("yes")
    assert call.bookings() == []


def test_goodbye_ends_call() -> None:
    call = FakeCall()
    assert "goodbye" in call.say("thats all thank you bye").lower()
    assert call.ended


def test_streams_sentence_by_sentence_with_tool_call_last() -> None:
    policy = ReceptionPolicy(clock=lambda: NOW)
    msgs = [Message("user", "book a cleaning tuesday at nine")]

    async def collect() -> list[Any]:
        return [x async for x in policy.complete(msgs)]

    items = asyncio.run(collect())
    assert isinstance(items[-1], ToolCall) and items[-1].name == "check_availability"
    assert items[-1].arguments == {"service": "cleaning", "date": "2026-03-03", "time_preference": "09:00"}
    greeting = asyncio.run(_collect(policy, [Message("system", "x")]))
    assert [type(x) for x in greeting] == [TextDelta, TextDelta]


async def _collect(policy: ReceptionPolicy, msgs: list[Any]) -> list[Any]:
    return [x async for x in policy.complete(msgs)]


def test_resume_on_another_worker_with_openai_dicts() -> None:
    """A fresh policy instance continues from the history alone, given as OpenAI-style dicts."""
    call = converse(["cleaning on wednesday at ten", "john smith", "no"])
    dicts: list[dict[str, Any]] = []
    for m in call.messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [{"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                               for c in m.tool_calls]
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        dicts.append(d)
    dicts.append({"role": "user", "content": "yes"})
    fresh = ReceptionPolicy(clock=lambda: NOW)
    assert fresh.state(dicts[:-1]).expecting == "confirm"
    items = asyncio.run(_collect(fresh, dicts))
    assert [(x.name, x.arguments) for x in items if isinstance(x, ToolCall)] == [
        ("create_booking", {"name": "John Smith", "service": "cleaning", "start": "2026-03-04T10:00"})]
    schemas = call.registry.openai_schemas()
    assert [x for x in fresh.respond(dicts, schemas) if not hasattr(x, "text")]


def test_only_offered_tools_are_called() -> None:
    policy = ReceptionPolicy(clock=lambda: NOW)
    msgs = [Message("user", "bye")]
    assert [type(x) for x in asyncio.run(_collect(policy, msgs))] == [TextDelta, ToolCall]
    only_calendar = CalendarTools(Calendar(clock=lambda: NOW)).adapters()
    actions = policy.respond(msgs, [t.spec() for t in only_calendar])
    assert all(hasattr(a, "text") for a in actions)  # no end_call when the pipeline has none


def test_state_round_trips() -> None:
    call = converse(["filling on friday at two", "john smith"])
    state = call.policy.state(call.messages)
    again = type(state).from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state and state.expecting == "phone" and state.time == "14:00"
