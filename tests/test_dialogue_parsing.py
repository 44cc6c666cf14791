"""Spoken-form parsing of ASR text: dates, times, numbers, phones, names, yes/no, services, intents."""

from __future__ import annotations

from datetime import date, time

import pytest

from cells.agents.reception.clinic import default_clinic, stt_vocabulary
from cells.agents.reception.intents import detect_intents, find_name, find_service, understand, yes_no
from cells.dialogue.answers import choose_option
from cells.dialogue.parsing import parse_date, parse_time
from cells.dialogue.spoken import parse_cardinal, parse_ordinal, parse_phone, tokenize

TODAY = date(2026, 3, 2)  # a Monday
CLINIC = default_clinic()


@pytest.mark.parametrize(("text", "expected"), [
    ("today", date(2026, 3, 2)),
    ("tomorrow", date(2026, 3, 3)),
    ("tomorrow morning", date(2026, 3, 3)),
    ("the day after tomorrow", date(2026, 3, 4)),
    ("tuesday", date(2026, 3, 3)),
    ("on wednesday please", date(2026, 3, 4)),
    ("this friday", date(2026, 3, 6)),
    ("next tuesday", date(2026, 3, 10)),
    ("next monday", date(2026, 3, 9)),
    ("monday", date(2026, 3, 9)),
    ("thursday the fifth", date(2026, 3, 5)),
    ("friday the thirteenth", date(2026, 3, 13)),
    ("the fifth", date(2026, 3, 5)),
    ("on the 12th", date(2026, 3, 12)),
    ("the first", date(2026, 4, 1)),
    ("march fifth", date(2026, 3, 5)),
    ("march the fifth", date(2026, 3, 5)),
    ("march 5", date(2026, 3, 5)),
    ("the fifth of march", date(2026, 3, 5)),
    ("fifth of april", date(2026, 4, 5)),
    ("april twenty first", date(2026, 4, 21)),
    ("the twenty second of march", date(2026, 3, 22)),
    ("january tenth", date(2027, 1, 10)),
    ("thursday march twelfth", date(2026, 3, 12)),
    ("can i come in next week", date(2026, 3, 9)),
    ("uh maybe wednesdays", date(2026, 3, 4)),
])
def test_dates(text: str, expected: date) -> None:
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize("text", ["may i book", "hold on a second", "the first one", "nine thirty",
                                  "i need a cleaning", "the second option"])
def test_not_dates(text: str) -> None:
    assert parse_date(text, TODAY) is None


def test_bare_ordinal_counts_only_when_a_date_was_asked() -> None:
    assert parse_date("fifth", TODAY) is None
    assert parse_date("fifth", TODAY, expecting=True) == date(2026, 3, 5)


@pytest.mark.parametrize(("text", "expected"), [
    ("at nine", time(9, 0)),
    ("nine thirty", time(9, 30)),
    ("nine fifteen", time(9, 15)),
    ("at ten forty five", time(10, 45)),
    ("half past nine", time(9, 30)),
    ("quarter past ten", time(10, 15)),
    ("quarter to ten", time(9, 45)),
    ("twenty past two", time(14, 20)),
    ("ten a m", time(10, 0)),
    ("ten am", time(10, 0)),
    ("two p m", time(14, 0)),
    ("at 2 p.m.", time(14, 0)),
    ("2pm", time(14, 0)),
    ("9:30", time(9, 30)),
    ("noon", time(12, 0)),
    ("around midday", time(12, 0)),
    ("fourteen hundred", time(14, 0)),
    ("fourteen thirty", time(14, 30)),
    ("at two", time(14, 0)),
    ("at to", time(14, 0)),
    ("at three", time(15, 0)),
    ("at eleven", time(11, 0)),
    ("ten oh five", time(10, 5)),
    ("eight o'clock", time(8, 0)),
    ("eight oclock", time(8, 0)),
    ("nine in the morning", time(9, 0)),
    ("four in the afternoon", time(16, 0)),
    ("how about ten", time(10, 0)),
    ("twelve thirty", time(12, 30)),
])
def test_times(text: str, expected: time) -> None:
    got = parse_time(text)
    assert got is not None and got.at == expected


@pytest.mark.parametrize(("text", "preference"), [
    ("in the morning", "morning"),
    ("tomorrow afternoon", "afternoon"),
    ("something in the evening", "evening"),
    ("after three", "after 15:00"),
    ("before noon", "before 12:00"),
    ("after like two", "after 14:00"),
])
def test_time_preferences(text: str, preference: str) -> None:
    got = parse_time(text)
    assert got is not None and got.at is None and got.preference == preference


def test_bare_hour_needs_context() -> None:
    assert parse_time("nine") is None
    assert parse_time("nine", expecting=True).at == time(9, 0)  # type: ignore[union-attr]
    assert parse_time("that one", expecting=True) is None
    assert parse_time("i need two fillings") is None


@pytest.mark.parametrize(("text", "digits"), [
    ("five five five two one eight seven", "5552187"),
    ("my number is five five five oh one four two", "5550142"),
    ("double five five two one eight seven", "5552187"),
    ("triple five two one eight seven", "5552187"),
    ("its five fifty five twenty one eighty seven", "5552187"),
    ("555 2187", "5552187"),
    ("four one five five five five zero one nine nine", "4155550199"),
    ("uh five five five um two one eight seven thanks", "5552187"),
])
def test_phones(text: str, digits: str) -> None:
    assert parse_phone(text) == digits


def test_short_digit_runs_are_not_phones() -> None:
    assert parse_phone("nine thirty") is None


def test_numbers() -> None:
    assert parse_cardinal(["twenty", "five"], 0) == (25, 2)
    assert parse_cardinal(["7"], 0) == (7, 1)
    assert parse_ordinal(["twenty", "first"], 0) == (21, 2)
    assert parse_ordinal(["3rd"], 0) == (3, 1)
    assert tokenize("It's 9 A.M., O'Clock!") == ["its", "9", "am", "oclock"]
    assert tokenize("ten a m") == ["ten", "am"]
    assert tokenize("i am john") == ["i", "am", "john"]


@pytest.mark.parametrize(("text", "expecting", "name"), [
    ("my name is john smith", None, "John Smith"),
    ("hi this is mary jones calling about an appointment", None, "Mary Jones"),
    ("im david and i need a cleaning", None, "David"),
    ("the name is anna brown", None, "Anna Brown"),
    ("its sarah connor", "name", "Sarah Connor"),
    ("um yeah its peter", "name", "Peter"),
    ("john smith", "name", "John Smith"),
    ("sure its emily taylor and my number is five five five", "name", "Emily Taylor"),
])
def test_names(text: str, expecting: str | None, name: str) -> None:
    assert find_name(tokenize(text), expecting=expecting == "name") == name


@pytest.mark.parametrize("text", ["this is for a cleaning", "im looking for an appointment", "its tuesday",
                                  "i am not sure", "im calling to book"])
def test_not_names(text: str) -> None:
    assert find_name(tokenize(text)) is None


@pytest.mark.parametrize(("text", "answer"), [
    ("yes", "yes"), ("yeah", "yes"), ("yep", "yes"), ("sure", "yes"), ("that's right", "yes"),
    ("correct", "yes"), ("yes please", "yes"), ("sounds good", "yes"), ("go ahead", "yes"),
    ("uh huh", "yes"), ("absolutely", "yes"), ("okay", "yes"), ("perfect", "yes"), ("no problem", "yes"),
    ("no", "no"), ("nope", "no"), ("nah", "no"), ("that's not right", "no"), ("no i said wednesday", "no"),
    ("wait", "no"), ("hold on", "no"), ("that's wrong", "no"),
    ("i'm not sure", None), ("tuesday", None), ("", None),
])
def test_yes_no(text: str, answer: str | None) -> None:
    assert yes_no(tokenize(text)) == answer


@pytest.mark.parametrize(("text", "service"), [
    ("i need a cleaning", "cleaning"), ("can i get my teeth cleaned", "cleaning"),
    ("just a checkup", "cleaning"), ("a check up please", "cleaning"), ("hygiene visit", "cleaning"),
    ("i think i have a cavity", "filling"), ("i need a filling", "filling"),
    ("teeth whitening", "whitening"), ("i have a toothache", "emergency"), ("tooth pain", "emergency"),
    ("its an emergency", "emergency"), ("i chipped my tooth", "emergency"),
    ("a consultation about implants", "consultation"), ("i am a new patient", "consultation"),
])
def test_services(text: str, service: str) -> None:
    assert find_service(tokenize(text), CLINIC) == service


@pytest.mark.parametrize(("text", "intent"), [
    ("i want to book an appointment", "book"), ("can i make an appointment", "book"),
    ("do you have any openings on friday", "book"), ("i need to cancel my appointment", "cancel"),
    ("i cant make it on tuesday", "cancel"), ("i need to reschedule", "move"),
    ("can i move my appointment", "move"), ("what are your hours", "hours"),
    ("are you open on saturday", "hours"),
    ("when do you close", "hours"), ("how much is a cleaning", "price"), ("what does it cost", "price"),
    ("what services do you offer", "services"), ("where are you located", "location"),
    ("whats your address", "location"), ("can i talk to a real person", "human"),
    ("let me speak to the receptionist", "human"), ("thats all thanks bye", "goodbye"),
    ("never mind", "abort"), ("can you repeat that", "repeat"),
])
def test_intents(text: str, intent: str) -> None:
    assert intent in detect_intents(tokenize(text))


def test_weak_booking_phrases_need_a_service() -> None:
    assert "book" in understand("i need a filling", TODAY, CLINIC).intents
    assert "book" not in understand("have a good day", TODAY, CLINIC).intents


def test_choose_option() -> None:
    assert choose_option(tokenize("the first one"), 3) == 0
    assert choose_option(tokenize("the second one please"), 3) == 1
    assert choose_option(tokenize("the last one"), 3) == 2
    assert choose_option(tokenize("the later one"), 2) == 1
    assert choose_option(tokenize("nine thirty"), 3) is None


def test_understand_a_whole_request() -> None:
    u = understand("hi this is john i want a cleaning on tuesday the third at half past nine", TODAY, CLINIC)
    assert (u.name, u.service, u.date, u.time.at if u.time else None) == (
        "John", "cleaning", date(2026, 3, 3), time(9, 30))
    assert "book" in u.intents


def test_phone_digits_do_not_become_dates_or_times() -> None:
    u = understand("my number is five five five two one eight seven", TODAY, CLINIC)
    assert u.phone == "5552187" and u.time is None and u.date is None


def test_stt_vocabulary_is_plain_lists() -> None:
    vocab = stt_vocabulary()
    assert set(vocab) == {"services", "names", "phrases", "words", "templates"}
    assert "cleaning" in vocab["services"] and "doctor patel" in vocab["names"]
    assert all(isinstance(w, str) and w == w.lower() for w in vocab["words"])


def test_the_neutral_answers_take_an_agents_own_words_and_the_clinic_keeps_its_own() -> None:
    """cells.dialogue.answers knows no vertical's words: an agent names its own as no names."""
    from cells.dialogue import answers

    said = tokenize("puncture please")
    assert answers.find_name(said, expecting=True) == "Puncture"
    assert answers.find_name(said, expecting=True, not_names={"puncture"}) is None
    assert answers.find_name(tokenize("cleaning please"), expecting=True) == "Cleaning"
    assert find_name(tokenize("cleaning please"), expecting=True) is None  # the clinic's reader
    assert answers.find_name(tokenize("its anna kowalski"), expecting=True) == "Anna Kowalski"
