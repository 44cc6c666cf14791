"""Booking calls by callers who do not follow the agent's order, on text (fast): a slot is taken from any
turn whatever was asked, a turn of digits never moves the agreed day or time, a name said twice or a
stray capitalised word never becomes the name, a question about the cancellation policy is no
cancellation, "make it ... instead" at the read-back is a change, a number one digit short is asked
again with the keypad offered, and the read-back says the number so the caller can fix it. The second
set of unscripted callers (cells/simulator/more_callers.py), heard perfectly, each leave exactly the
booking they meant."""

from __future__ import annotations

from datetime import date

import pytest

from cells.agents.reception.clinic import default_clinic
from cells.agents.reception.intents import detect_intents, find_name, understand
from cells.agents.reception.policy import ReceptionPolicy
from cells.agents.reception.replies import say_phone
from cells.agents.reception.state import DialogueState
from cells.dialogue.spoken import tokenize
from cells.simulator.booking_check import check
from cells.simulator.more_callers import MORE_CALLERS
from tests.reception_harness import NOW, FakeCall

TODAY = NOW.date()  # Monday 2 March 2026


def rules_only() -> FakeCall:
    return FakeCall(ReceptionPolicy(clock=lambda: NOW, reader=False))


def booked(call: FakeCall) -> list[tuple[str, str, str, str | None]]:
    return [(b.name, b.service, b.start.isoformat(timespec="minutes"), b.phone)
            for b in call.calendar.bookings()]


# --- a number is a number, whenever it is said ------------------------------------------------------


@pytest.mark.parametrize("expecting", ["time", "date", "name", "confirm", "intent"])
def test_a_number_said_unasked_is_the_phone_and_no_time(expecting: str) -> None:
    u = understand("555 0198.", TODAY, default_clinic(), expecting=expecting)
    assert u.phone == "5550198" and u.time is None and u.date is None


def test_a_clock_time_with_many_digits_is_still_a_time() -> None:
    u = understand("March 12 at 2 30 pm", TODAY, default_clinic(), expecting="date")
    assert u.phone is None and u.time is not None and u.time.as_argument() == "14:30"


def test_the_number_given_while_times_are_offered_keeps_the_time_open() -> None:
    call = rules_only()
    call.say("I'd like to get my teeth cleaned next Thursday afternoon.")
    reply = call.say("555 0198.")  # the caller's script went on to the number; 0198 is no 01:98
    assert "quarter hour" not in reply and "I have" in reply
    call.say("Two o'clock works.")
    call.say("Rachel Adams.")
    assert "5 5 5, 0 1 9 8" in call.replies[-1]  # the number taken earlier is read back, not asked again
    call.say("Yes.")
    assert booked(call) == [("Rachel Adams", "cleaning", "2026-03-12T14:00", "5550198")]


def test_a_turn_of_digits_never_moves_the_agreed_slot() -> None:
    policy = ReceptionPolicy(clock=lambda: NOW, reader=False)
    s = DialogueState(flow="book", expecting="phone", service="cleaning", date="2026-03-05", time="11:00",
                      verified=True, name="Mark Brown", phone_asked=True)
    u = understand("5 5 5 at 1 3", TODAY, policy.clinic, expecting="phone")
    u.time = understand("at 1", TODAY, policy.clinic).time  # as if the digits had been read as a time
    u.date = date(2026, 3, 6)
    policy.steps._apply(s, u)
    assert (s.date, s.time) == ("2026-03-05", "11:00")


def test_name_and_number_in_one_breath_when_asked_for_the_name() -> None:
    call = rules_only()
    call.say("I'd like a cleaning on Friday at 11.")
    reply = call.say("Mark Brown, and my number is 555 8261.")
    assert "Shall I book it?" in reply and "5 5 5, 8 2 6 1" in reply
    call.say("Yes.")
    assert booked(call) == [("Mark Brown", "cleaning", "2026-03-06T11:00", "5558261")]


# --- numbers heard short, and fixed at the read-back -------------------------------------------------


def test_a_number_one_digit_short_is_read_back_and_asked_again_with_the_keypad() -> None:
    call = rules_only()
    call.say("I need a filling on Friday at ten in the morning.", "My name is Sarah Green.")
    reply = call.say("5 5 4 4 1 8.")
    assert "5 5 4, 4 1 8" in reply and "keypad" in reply and "Shall I book" not in reply
    reply = call.say("keypad 5 5 5 4 4 1 8")  # the whole number again replaces the short one
    assert "5 5 5, 4 4 1 8" in reply and "Shall I book it?" in reply
    call.say("Yes.")
    assert booked(call) == [("Sarah Green", "filling", "2026-03-06T10:00", "5554418")]


def test_the_rest_of_a_short_number_joins_it() -> None:
    call = rules_only()
    call.say("I need a filling on Friday at ten in the morning.", "My name is Sarah Green.", "5 5 5 4 4 1.")
    assert "5 5 5, 4 4 1 8" in call.say("8.")


def test_a_number_corrected_at_the_read_back_is_read_back_again_before_booking() -> None:
    call = rules_only()
    call.say("I'd like a cleaning on Friday at 11.", "Mark Brown.", "555 8261.")
    reply = call.say("No, the number is 555 8262.")
    assert "5 5 5, 8 2 6 2" in reply and not call.called("create_booking")
    call.say("Yes.")
    assert booked(call) == [("Mark Brown", "cleaning", "2026-03-06T11:00", "5558262")]


def test_say_phone_reads_digits_one_by_one() -> None:
    assert say_phone("5553307") == "5 5 5, 3 3 0 7"
    assert say_phone("5551234567") == "5 5 5, 1 2 3, 4 5 6 7"


# --- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "name"), [
    ("Hughes. Laura Hughes.", "Laura Hughes"),
    ("Laura, Laura Hughes.", "Laura Hughes"),
    ("It's John Smith, S M I T H.", "John Smith"),
    ("My number's five five five, double four, two one.", None),
])
def test_a_name_said_twice_is_kept_once(text: str, name: str | None) -> None:
    assert find_name(tokenize(text), expecting=True) == name


def test_a_stray_capitalised_word_at_the_read_back_does_not_replace_the_name() -> None:
    call = rules_only()
    call.say("I'd like a cleaning on Friday at 11.", "Laura Hughes.", "555 3307.")
    reply = call.say("It is Pound Stod.")  # "sounds good", misheard
    assert "for Laura Hughes" in reply and not call.called("create_booking")
    reply = call.say("No, my name is Laura Hayes.")  # said as a name, it does
    assert "for Laura Hayes" in reply


def test_the_name_s_price_asks_no_price() -> None:
    call = rules_only()
    call.say("I'd like a filling on Wednesday at half past nine.")
    reply = call.say("The name's Owen Price.")
    assert "dollars" not in reply and "phone number" in reply


# --- corrections and questions in the middle ----------------------------------------------------------


def test_make_it_instead_at_the_read_back_is_a_change_not_an_abort() -> None:
    call = rules_only()
    call.say("Can I book a check-up on Wednesday at 11?", "Mark Brown.", "5 5 5 8 2 6 1.")
    reply = call.say("Actually, can we make it stop there instead.")  # "Thursday", misheard
    assert "change" in reply and "won't book" not in reply
    call.say("Thursday.")
    call.say("Yes, that's right.")
    assert booked(call) == [("Mark Brown", "cleaning", "2026-03-05T11:00", "5558261")]


def test_stop_alone_still_ends_the_booking() -> None:
    call = rules_only()
    call.say("Can I book a check-up on Wednesday at 11?")
    assert "won't book" in call.say("Stop, forget it.")


@pytest.mark.parametrize("text", ["What is your cancellation policy?", "whats your cancellation policy",
                                  "Is there a fee if I cancel?", "How much notice do you need if I cancel?",
                                  "Do you charge for cancelling?"])
def test_a_question_about_the_cancellation_rules_is_no_cancellation(text: str) -> None:
    intents = detect_intents(tokenize(text))
    assert "cancel" not in intents and "ask_rules" in intents


@pytest.mark.parametrize("text", ["I need to cancel my appointment", "cancel it please",
                                  "I want to cancel, is there a fee?", "Can I cancel my appointment?"])
def test_a_request_to_cancel_stays_one(text: str) -> None:
    assert "cancel" in detect_intents(tokenize(text))
    assert "ask_rules" not in detect_intents(tokenize(text))


def test_the_cancellation_policy_asked_mid_booking_keeps_the_booking_going() -> None:
    call = rules_only()
    call.say("I'd like a cleaning on Friday at 11.", "Mark Brown.")
    reply = call.say("What's your cancellation policy?")
    assert "won't book" not in reply and reply.endswith("phone number to reach you?")
    assert not call.called("find_booking") and not call.called("cancel_booking")
    call.say("555 8261.", "Yes.")
    assert booked(call) == [("Mark Brown", "cleaning", "2026-03-06T11:00", "5558261")]


def test_the_day_and_time_are_said_back_when_found_free() -> None:
    call = rules_only()
    call.say("Hello there, I was hoping to book a filling for Wednesday at half past nine.")
    assert "Friday, March 6th at 9:30 a.m. is free" in call.say("Actually, can we do Friday instead?")


# --- the second set of unscripted callers, heard perfectly ------------------------------------------


def as_calendar(call: FakeCall) -> list[dict[str, object]]:
    return [{"id": b.id, "name": b.name, "service": b.service, "date": b.start.date().isoformat(),
             "time": b.start.strftime("%H:%M"), "phone": b.phone} for b in call.calendar.bookings()]


@pytest.mark.parametrize("name", list(MORE_CALLERS))
def test_each_caller_of_the_second_set_heard_perfectly_gets_exactly_their_booking(name: str) -> None:
    script = MORE_CALLERS[name].script
    call = FakeCall()
    for line in script.lines:
        call.say(" ".join(filter(None, (line.text, line.then))))
    disposition = "transfer" if call.transfer.requests else "completed"
    assert check(script, [], as_calendar(call), disposition, TODAY) == []


def test_a_time_changed_when_asked_for_the_number_is_a_time_not_digits() -> None:
    call = rules_only()
    call.say("I would like a cleaning on Friday at 11.", "Laura Hughes.")
    reply = call.say("Sorry, can we make it 11 30 instead?")
    assert "Friday, March 6th at 11:30 a.m. is free" in reply and reply.endswith("reach you?")
    call.say("555 3307", "Yes.")
    assert booked(call) == [("Laura Hughes", "cleaning", "2026-03-06T11:30", "5553307")]


def test_a_weekday_changed_to_is_never_today() -> None:
    call = rules_only()  # today is Monday 2 March; Friday the 6th agreed
    call.say("I would like a cleaning on Friday at 11.", "Laura Hughes.")
    assert "Monday, March 9th at 2 p.m. is free" in call.say("Actually, make it Monday at 2 pm.")


@pytest.mark.parametrize("fix", [["No, it is Laura Hughes."], ["No.", "Laura Hughes."],
                                 ["The name is Laura Hughes."]])
def test_a_misheard_name_is_fixed_at_the_read_back_without_starting_over(fix: list[str]) -> None:
    call = rules_only()
    call.say("I would like a cleaning on Friday at 11.", "Pound stod.", "555 3307")
    reply = call.say(*fix)
    assert "for Laura Hughes" in reply and reply.endswith("Shall I book it?")
    call.say("Yes.")
    assert booked(call) == [("Laura Hughes", "cleaning", "2026-03-06T11:00", "5553307")]


def test_a_number_not_understood_is_asked_again_once_with_the_keypad_offered() -> None:
    call = rules_only()
    call.say("I would like a cleaning on Friday at 11.", "Laura Hughes.")
    reply = call.say("Pound stod.")
    assert "keypad" in reply and not call.called("create_booking")
    reply = call.say("keypad 5 5 5 3 3 0 7")
    assert "5 5 5, 3 3 0 7" in reply and reply.endswith("Shall I book it?")


# --- more callers in their own words, on text, each with the calendar it must leave ------------------

OWN_WORDS: dict[str, tuple[list[str], list[tuple[str, str, str, str | None]]]] = {
    "scale-and-polish-uk-mobile": (
        ["Hiya, I was wondering if I could get booked in for a scale and polish sometime next Tuesday "
         "morning?",
         "Nine thirty if you have it.", "Jo Baker. That's B A K E R.",
         "Oh seven seven oh oh, nine double oh, one two three.", "Lovely, yes.",
         "No, you've been very helpful, bye."],
        [("Jo Baker", "cleaning", "2026-03-10T09:30", "07700900123")]),
    "chipped-whatever-earliest": (
        ["Yeah hi, um, I chipped my tooth and need to see someone, can I come in Friday?",
         "Whatever's earliest.", "Sam Ortiz.", "555, 0142.", "Yep.", "Nope, thanks."],
        [("Sam Ortiz", "emergency", "2026-03-06T08:00", "5550142")]),
    "son-after-school": (
        ["Hello, I need to book in my son for a check-up, Thursday after school.", "Half three is good.",
         "His name is Leo Grant.", "You can reach me on 555 6240.", "Yes please.", "No, cheers."],
        [("Leo Grant", "cleaning", "2026-03-05T15:30", "5556240")]),
    "hang-on-make-it-11": (
        ["Can I book a whitening for Saturday at 10?", "Mia Chen.", "555 2288.",
         "Hang on, can we make it 11?", "Yes.", "Bye."],
        [("Mia Chen", "whitening", "2026-03-07T11:00", "5552288")]),
    "make-a-booking-day-of-month": (
        ["I want to make a booking for a cleaning on the 10th at 9 in the morning.",
         "Actually no, can we do the 11th instead?", "It's Zoe Hart.", "555 4321.", "That's correct.",
         "Nothing else."],
        [("Zoe Hart", "cleaning", "2026-03-11T09:00", "5554321")]),
    "mobile-is": (
        ["I'd like to book an appointment.", "A filling please.", "How about Wednesday the 4th at 3pm?",
         "Dan Fox.", "My mobile is 555 7781.", "Correct.", "That's everything."],
        [("Dan Fox", "filling", "2026-03-04T15:00", "5557781")]),
}


@pytest.mark.parametrize("name", list(OWN_WORDS))
def test_callers_in_their_own_words_get_exactly_their_booking(name: str) -> None:
    lines, calendar = OWN_WORDS[name]
    call = FakeCall()
    for i, line in enumerate(lines):
        call.say(line)
        assert not call.called("create_booking") or i >= len(lines) - 3  # only after the read-back's yes
    assert booked(call) == calendar and not call.called("cancel_booking") and not call.called("move_booking")


def test_a_request_to_cancel_that_mentions_the_fee_is_still_a_request() -> None:
    assert "cancel" in detect_intents(tokenize("Can I cancel my appointment without a fee?"))
    assert "cancel" not in detect_intents(tokenize("Can you tell me your cancellation policy?"))
