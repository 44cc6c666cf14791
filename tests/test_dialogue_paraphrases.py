"""Callers who phrase things their own way: the Reception policy, driven turn by turn as a call drives it.

Input is what a speech recogniser writes: lowercase, no punctuation, numbers as words. Each test asserts
what the caller would notice: the answer given, the slot filled, the booking made, moved or cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time

import pytest
from reception_harness import NOW, FakeCall

from cells.agents.reception.clinic import default_clinic
from cells.agents.reception.intents import detect_intents, find_name, understand, yes_no
from cells.agents.reception.state import DialogueState
from cells.dialogue.parsing import parse_date, parse_time
from cells.dialogue.spoken import parse_phone, tokenize
from cells.providers.base import ToolCall

TODAY = NOW.date()
CLINIC = default_clinic()
ANYTHING_ELSE = "anything else I can help you with?"


class Caller(FakeCall):
    """One call, from a calendar that may already hold bookings."""

    def __init__(self, bookings: Sequence[tuple[str, str, datetime]] = ()) -> None:
        super().__init__(bookings=bookings)

    @property
    def calls(self) -> list[ToolCall]:
        return self.tool_log

    @property
    def state(self) -> DialogueState:
        return self.policy.state(self.messages)


def _booked(tokens: str) -> list[tuple[str, str, datetime]]:
    name, service, start = tokens.split("|")
    return [(name, service, datetime.fromisoformat(start))]


# --- questions: hours, location, prices, durations ---------------------------------------------------


@pytest.mark.parametrize(("question", "fragment"), [
    ("when do you guys close on fridays", "On Fridays we're open from 8 a.m. to 5 p.m."),
    ("are you open saturdays", "On Saturdays we're open from 9 a.m. to 1 p.m."),
    ("what time do you open tomorrow", "On Tuesdays we're open from 8 a.m."),
    ("how late are you open", "Thursday 8 a.m. to 7 p.m."),
    ("what time do you guys shut", "We're open Monday to Wednesday"),
    ("what time does the office open", "We're open Monday to Wednesday"),
    ("when do you shut on saturdays", "On Saturdays we're open from 9 a.m. to 1 p.m."),
    ("is the clinic open on monday", "On Mondays we're open"),
    ("how late do you stay open on thursdays", "to 7 p.m."),
    ("do you work weekends", "We're closed on Sundays."),
    ("do you do saturdays", "On Saturdays we're open from 9 a.m. to 1 p.m."),
    ("are you open on the weekend", "We're closed on Sundays."),
    ("are you guys open now", "On Mondays we're open"),
])
def test_opening_hours_questions(question: str, fragment: str) -> None:
    reply = Caller().say(question)
    assert fragment in reply and reply.endswith(ANYTHING_ELSE), reply


@pytest.mark.parametrize("question", [
    "whats the address", "how do i get to you", "where can i park", "is there parking",
    "what street are you on", "wheres your office", "are you near the library", "what area are you in",
    "is there somewhere to park", "where are you guys", "are you close to the station",
])
def test_location_questions(question: str) -> None:
    reply = Caller().say(question)
    assert "42 Harbor Street" in reply and reply.endswith(ANYTHING_ELSE), reply


@pytest.mark.parametrize(("question", "fragment"), [
    ("how much is a cleaning", "120 dollars"),
    ("what does a filling run", "A filling is 180 dollars"),
    ("what would a filling set me back", "A filling is 180 dollars"),
    ("what are your rates", "For example"),
    ("how much do you guys charge for whitening", "350 dollars"),
    ("whats a cleaning cost", "120 dollars"),
    ("how long does a cleaning take", "takes about 60 minutes"),
])
def test_price_and_duration_questions(question: str, fragment: str) -> None:
    call = Caller()
    reply = call.say(question)
    assert fragment in reply and reply.endswith(ANYTHING_ELSE), reply
    assert call.state.flow is None  # a question about a filling books nothing


def test_a_question_mid_booking_keeps_the_booking_going() -> None:
    call = Caller()
    call.say("i need a cleaning on thursday")
    reply = call.say("hang on what time do you guys close on thursdays")
    assert "to 7 p.m." in reply and call.state.flow == "book" and call.state.date == "2026-03-05"
    call.say("the six pm one works", "sarah lee", "no", "yes")
    assert call.bookings() == [("Sarah Lee", "cleaning", "2026-03-05T18:00")]


def test_is_a_time_open_mid_booking_asks_for_that_slot() -> None:
    call = Caller()
    call.say("i want a filling")
    reply = call.say("is tuesday at ten open")
    assert "free" in reply and call.state.time == "10:00" and "we're open from" not in reply


def test_front_desk_topics_offer_a_transfer() -> None:
    call = Caller()
    reply = call.say("do you take insurance")
    assert "front desk" in reply and reply.endswith("?")
    assert call.say("no thanks").endswith(ANYTHING_ELSE)
    assert not call.called("transfer_to_human")


# --- asking for a person -------------------------------------------------------------------------------


@pytest.mark.parametrize("request_", [
    "can i talk to someone real", "is there anyone i can talk to", "can i speak to doctor patel",
    "i would like to talk to an actual person", "put me through to someone", "let me talk to a human",
])
def test_asking_for_a_person_transfers(request_: str) -> None:
    call = Caller()
    assert "transfer" in call.say(request_)
    assert call.transfer.requests == ["caller asked for a person"]


@pytest.mark.parametrize(("text", "service"), [
    ("can someone see me tomorrow morning", None),
    ("i need to see somebody about a toothache", "emergency"),
    ("whats the earliest you can see me", None),
])
def test_someone_who_should_see_the_caller_is_a_booking(text: str, service: str | None) -> None:
    call = Caller()
    call.say(text)
    assert not call.called("transfer_to_human") and call.state.flow == "book"
    assert call.state.service == service


# --- booking with dates, times, names and numbers said every which way -------------------------------


CONVERSATIONS = [
    (["i need a cleaning", "next friday afternoon", "the first one", "its priya raman",
      "oh seven seven double nine one two three four five six", "yeah that works"],
     ("Priya Raman", "cleaning", "2026-03-13T12:00"), "07799123456"),
    (["i want to book a filling", "the sixteenth at half past two", "raman r a m a n",
      "five five five, one two three, four five six seven", "thats perfect thanks"],
     ("Raman", "filling", "2026-03-16T14:30"), "5551234567"),
    (["hi there id like to get my teeth cleaned", "tomorrow morning around 9", "perfect", "its priya raman",
      "no thanks", "that's perfect thanks"], ("Priya Raman", "cleaning", "2026-03-03T09:00"), None),
    (["cleaning please", "thursday", "quarter to four", "this is dr smiths patient john", "skip", "yep"],
     ("John", "cleaning", "2026-03-05T15:45"), None),
    (["can i come in at noon tomorrow for a filling", "sure its jennifer o connor", "nah", "you bet"],
     ("Jennifer O'Connor", "filling", "2026-03-03T12:00"), None),
    (["cleaning please", "thursday", "after 5", "the second one", "you can put it down as tom baker",
      "its the same one im calling from", "mhm"], ("Tom Baker", "cleaning", "2026-03-05T17:30"), None),
    (["book me in for a cleaning two weeks from now", "at half nine", "first name john last name smith",
      "area code four one five then five five five two three four five", "sounds good"],
     ("John Smith", "cleaning", "2026-03-16T09:30"), "4155552345"),
    (["my tooth is killing me", "whats the soonest you have", "first one is fine",
      "put it under my wife linda", "no", "yes"], ("Linda", "emergency", "2026-03-02T08:30"), None),
    (["i need a cleaning on thursday", "yeah the one pm", "k i m kim", "no", "yes please"],
     ("Kim", "cleaning", "2026-03-05T13:00"), None),
    (["can i get a checkup friday next week", "nineish", "mary jones", "no", "absolutely"],
     ("Mary Jones", "cleaning", "2026-03-13T09:00"), None),
]


@pytest.mark.parametrize(("lines", "booked", "phone"), CONVERSATIONS)
def test_booking_conversations(lines: list[str], booked: tuple[str, str, str], phone: str | None) -> None:
    call = Caller()
    for line in lines[:-1]:
        call.say(line)
        assert not call.called("create_booking"), f"booked before the final yes (at {line!r})"
    call.say(lines[-1])
    assert call.bookings() == [booked]
    assert call.called("create_booking")[0].get("phone") == phone


def test_a_correction_at_the_readback_is_read_back_again() -> None:
    call = Caller()
    call.say("cleaning on wednesday at ten", "john smith", "no")
    reply = call.say("actually no make it eleven")
    assert "Wednesday, March 4th at 11 a.m." in reply and call.bookings() == []
    call.say("yes")
    assert call.bookings() == [("John Smith", "cleaning", "2026-03-04T11:00")]


@pytest.mark.parametrize("reply", ["yeah but make it eleven", "yes but at eleven instead"])
def test_a_yes_with_a_change_does_not_book_the_old_time(reply: str) -> None:
    call = Caller()
    call.say("cleaning on wednesday at ten", "john smith", "no")
    call.say(reply)
    assert call.bookings() == [] and call.state.time == "11:00"


@pytest.mark.parametrize("answer", ["eleven", "make it eleven", "the time please"])
def test_what_to_change_takes_a_bare_time(answer: str) -> None:
    call = Caller()
    call.say("cleaning on wednesday at ten", "john smith", "no", "nah")
    call.say(answer)
    if answer == "the time please":
        call.say("eleven")
    call.say("yes")
    assert call.bookings() == [("John Smith", "cleaning", "2026-03-04T11:00")]


def test_none_of_the_offers_asks_for_another_time() -> None:
    call = Caller()
    call.say("i need a cleaning on thursday")
    assert "other day or time" in call.say("none of those work")
    assert "Friday, March 6th" in call.say("friday morning")


@pytest.mark.parametrize("answer", ["whenever works", "any day is fine", "i dont mind",
                                    "whatever works for you"])
def test_any_day_means_the_soonest(answer: str) -> None:
    call = Caller()
    call.say("yeah i need to come in for a cleaning sometime")
    assert "Monday, March 2nd" in call.say(answer) and call.state.offered


def test_declining_the_transfer_asks_the_question_again() -> None:
    call = Caller()
    call.say("i need a cleaning", "blorp", "zzz")
    assert "transfer" in call.say("grr")
    reply = call.say("no")
    assert reply.endswith("What day works for you?") and "transfer" not in reply


def test_an_acknowledgement_is_not_a_name() -> None:
    call = Caller()
    call.say("i need a cleaning tomorrow at nine")
    reply = call.say("perfect")
    assert call.state.name is None and "name" in reply


def test_a_time_preference_while_booking_is_no_cancellation() -> None:
    call = Caller()
    call.say("i need a cleaning appointment but i cant come before five")
    assert call.state.flow == "book" and call.state.preference == "before 17:00"
    call.say("thursday")
    assert call.state.flow == "book" and call.state.offered


# --- moving and cancelling --------------------------------------------------------------------------


JOHN = "John Smith|cleaning|2026-03-03T09:00"


@pytest.mark.parametrize(("lines", "new_start"), [
    (["i need to push my appointment", "john smith", "thursday at two", "yes"], "2026-03-05T14:00"),
    (["i have to bump my appointment", "john smith", "friday morning", "the first one", "yes"],
     "2026-03-06T08:00"),
    (["can i change the time of my appointment", "john smith", "at eleven", "yes"], "2026-03-03T11:00"),
    (["i cant make it on tuesday can i come another day", "john smith", "thursday at ten", "yes"],
     "2026-03-05T10:00"),
    (["hi this is john smith i have an appointment tomorrow but something came up", "thursday at two",
      "yeah"], "2026-03-05T14:00"),
    (["something came up and i need a different time", "john smith", "wednesday at three", "yes"],
     "2026-03-04T15:00"),
    (["can i do my appointment on thursday instead", "john smith", "at two", "yes"], "2026-03-05T14:00"),
    (["i need to rebook my appointment", "john smith", "friday at ten", "yes"], "2026-03-06T10:00"),
    (["can i move my appointment to the afternoon", "john smith", "the first one", "yes"],
     "2026-03-03T12:00"),
    # a cancellation that turns into a move at the read-back
    (["i cant make it on tuesday", "john smith", "no can i move it to thursday at two", "yes"],
     "2026-03-05T14:00"),
    (["i need to cancel", "john smith", "actually can we do friday instead", "at ten", "yes"],
     "2026-03-06T10:00"),
    # two days in one turn: the booked one and the new one
    (["can i come on friday instead of tuesday", "john smith", "at ten", "yes"], "2026-03-06T10:00"),
    (["i booked for tuesday but i need thursday", "john smith", "two pm", "yes"], "2026-03-05T14:00"),
    (["can i move my appointment from tuesday to thursday at ten", "john smith", "yes"], "2026-03-05T10:00"),
])
def test_moving_an_appointment(lines: list[str], new_start: str) -> None:
    call = Caller(_booked(JOHN))
    call.say(*lines)
    assert call.bookings() == [("John Smith", "cleaning", new_start)]
    assert not call.called("cancel_booking")


@pytest.mark.parametrize("lines", [
    ["i cant make it on tuesday", "its john smith", "yes"],
    ["i wont be able to make my appointment tomorrow", "john smith", "just cancel it"],
    ["john smith calling i wanted to cancel tomorrow", "yes"],
    ["im not going to make it tomorrow", "john smith", "yes please"],
    ["scrap my appointment", "john smith", "yes"],
    ["i dont need the appointment anymore", "john smith", "yes"],
    ["i wont be coming tomorrow", "john smith", "yeah"],
    ["delete my booking", "john smith", "yes"],
])
def test_cancelling_an_appointment(lines: list[str]) -> None:
    call = Caller(_booked(JOHN))
    call.say(*lines)
    assert call.bookings() == [] and len(call.called("cancel_booking")) == 1


def test_giving_a_new_day_at_the_cancel_readback_never_cancels() -> None:
    call = Caller(_booked(JOHN))
    call.say("i cant make it on tuesday can i come another day", "john smith")
    call.say("thursday at ten")
    assert "move" in call.replies[-1] and call.bookings() == [("John Smith", "cleaning", "2026-03-03T09:00")]


# --- ending the call ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", [
    "thats everything cheers", "no that'd be it", "cheers", "no thats all", "nope im good thanks",
    "thats all i needed", "nah i think thats it", "no thank you have a good one",
])
def test_ending_after_a_booking(ending: str) -> None:
    call = Caller()
    call.say("cleaning on wednesday at ten", "john smith", "no", "yes")
    assert "goodbye" in call.say(ending).lower() and call.ended


# --- the parsers, for the families the conversations above rely on ------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("friday next week", date(2026, 3, 13)),
    ("in two weeks", date(2026, 3, 16)),
    ("two weeks from now", date(2026, 3, 16)),
    ("in three days", date(2026, 3, 5)),
    ("a week from today", date(2026, 3, 9)),
    ("a week from tuesday", date(2026, 3, 10)),
    ("in a couple of weeks", date(2026, 3, 16)),
    ("the week after next", date(2026, 3, 16)),
    ("sometime next week", date(2026, 3, 9)),
    ("any time this week", date(2026, 3, 2)),
    ("later this week", date(2026, 3, 3)),
    ("end of the week", date(2026, 3, 6)),
    ("this weekend", date(2026, 3, 7)),
    ("next month", date(2026, 4, 1)),
    ("the 14th", date(2026, 3, 14)),
])
def test_relative_dates(text: str, expected: date) -> None:
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("half two", time(14, 30)),
    ("half nine", time(9, 30)),
    ("nineish", time(9, 0)),
    ("around two ish", time(14, 0)),
    ("make it eleven", time(11, 0)),
    ("actually no make it 11", time(11, 0)),
    ("yeah the one pm", time(13, 0)),
    ("quarter to four", time(15, 45)),
    ("noon", time(12, 0)),
])
def test_more_times(text: str, expected: time) -> None:
    got = parse_time(text)
    assert got is not None and got.at == expected


@pytest.mark.parametrize(("text", "preference"), [
    ("after 5", "after 17:00"),
    ("not before ten", "after 10:00"),
    ("no earlier than ten", "after 10:00"),
    ("no later than four", "before 16:00"),
    ("anytime from four", "after 16:00"),
    ("after work", "evening"),
    ("end of the day", "evening"),
    ("sometime after lunch", "afternoon"),
])
def test_more_time_preferences(text: str, preference: str) -> None:
    got = parse_time(text)
    assert got is not None and got.at is None and got.preference == preference


@pytest.mark.parametrize("text", ["i need a cleaning but not on monday", "any day except monday",
                                  "any day other than monday"])
def test_an_excluded_day_is_not_the_date(text: str) -> None:
    assert parse_date(text, TODAY) is None


def test_early_next_week_is_a_date_not_a_morning() -> None:
    u = understand("early next week", TODAY, CLINIC)
    assert u.date == date(2026, 3, 9) and u.time is None


@pytest.mark.parametrize(("text", "name"), [
    ("this is dr smiths patient john", "John"),
    ("raman r a m a n", "Raman"),
    ("r a m a n", "Raman"),
    ("smith s m y t h", "Smyth"),
    ("its jon spelled j o n", "Jon"),
    ("john smith thats s m i t h", "John Smith"),
    ("my first name is priya and last name raman", "Priya Raman"),
    ("first name john last name smith", "John Smith"),
    ("sure its jennifer o connor", "Jennifer O'Connor"),
    ("put it under my wife linda", "Linda"),
    ("its for my daughter emily", "Emily"),
    ("you can put it down as tom baker", "Tom Baker"),
])
def test_names_when_asked(text: str, name: str) -> None:
    assert find_name(tokenize(text), expecting=True) == name


@pytest.mark.parametrize("text", ["perfect", "yeah perfect", "sounds great", "as soon as possible",
                                  "im open to anything on friday", "im flexible"])
def test_not_names_when_asked(text: str) -> None:
    assert find_name(tokenize(text), expecting=True) is None


@pytest.mark.parametrize(("text", "name"), [
    ("john smith here i need to cancel", "John Smith"),
    ("good morning john smith calling", "John Smith"),
])
def test_names_said_before_the_request(text: str, name: str) -> None:
    assert find_name(tokenize(text)) == name


def test_cleaning_here_is_no_name() -> None:
    assert find_name(tokenize("cleaning here please")) is None


@pytest.mark.parametrize(("text", "digits"), [
    ("oh seven seven double nine one two three four five six", "07799123456"),
    ("five five five, one two three, four five six seven", "5551234567"),
    ("five hundred and fifty five one two three four", "5551234"),
    ("eight hundred five five five one two one two", "8005551212"),
    ("area code four one five then five five five two three four five", "4155552345"),
])
def test_phone_numbers(text: str, digits: str) -> None:
    assert parse_phone(text) == digits


@pytest.mark.parametrize(("text", "answer"), [
    ("mhm", "yes"), ("you bet", "yes"), ("thats the one", "yes"), ("thatll work", "yes"),
    ("go for it", "yes"), ("i dont mind", "yes"), ("ok cool", "yes"), ("none of those", "no"),
    ("that wont work", "no"), ("uh uh", "no"), ("id rather not", "no"), ("yeah but make it eleven", None),
])
def test_more_yes_no(text: str, answer: str | None) -> None:
    assert yes_no(tokenize(text)) == answer


@pytest.mark.parametrize(("text", "intent"), [
    ("when do you guys close on fridays", "hours"), ("what time does the office open", "hours"),
    ("do you work weekends", "hours"), ("where can i park", "location"), ("wheres your office", "location"),
    ("what does a filling run", "price"), ("what are your rates", "price"),
    ("how long does a whitening take", "duration"), ("do you take insurance", "front_desk"),
    ("is there anyone i can talk to", "human"), ("can i speak to doctor patel", "human"),
    ("i need to push my appointment", "move"), ("can i change the time of my appointment", "move"),
    ("i have to bump my appointment", "move"), ("i cant make it on tuesday can i come another day", "move"),
    ("i wont be able to make my appointment", "cancel"), ("im not going to make it tomorrow", "cancel"),
    ("thats everything cheers", "goodbye"), ("no thatd be it", "goodbye"), ("cheers", "thanks"),
    ("whats the earliest you can see me", "book"), ("can you squeeze me in today", "book"),
    ("scrap my appointment", "cancel"), ("get rid of my appointment", "cancel"),
    ("can i come on friday instead of tuesday", "move"), ("i need to switch days", "move"),
])
def test_intent_families(text: str, intent: str) -> None:
    assert intent in detect_intents(tokenize(text))


@pytest.mark.parametrize(("text", "intent"), [
    ("can someone see me tomorrow morning", "human"), ("can i bring my son", "move"),
    ("i need to change my phone number", "move"), ("ill be able to come on friday", "cancel"),
    ("do you have anything open tomorrow", "hours"), ("whatever is open is fine", "hours"),
    ("are you close to the station", "hours"), ("do you have anything on the weekend", "hours"),
    ("would that be all right", "goodbye"), ("im not sure i can come friday", "cancel"),
    ("id like a cleaning instead of a filling", "move"),
])
def test_look_alikes_are_not_that_intent(text: str, intent: str) -> None:
    assert intent not in detect_intents(tokenize(text))
