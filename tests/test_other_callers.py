"""The callers the clinic was not tuned on (cells/simulator/other_callers.py), heard perfectly: each
script, as text through the reception policy, leaves exactly the booking its caller meant. The same
callers in real time, in their eSpeak voices through Whisper, are measured by `python -m evals.calls.bench`
(not a test: they rest on a recogniser that mishears these voices). Also the parsers' readings of the
corrections and the recogniser's spellings these callers showed."""

from __future__ import annotations

from datetime import date, time

import pytest

from cells.dialogue.parsing import parse_date, parse_time
from cells.dialogue.spoken import parse_phone
from cells.simulator.booking_check import check
from cells.simulator.other_callers import OTHER_CALLERS
from evals.calls.bench import CallOutcome, print_table
from evals.dialogue.harness import NOW, FakeCall

TODAY = NOW.date()  # Monday 2 March 2026


def as_calendar(call: FakeCall) -> list[dict[str, object]]:
    return [{"id": b.id, "name": b.name, "service": b.service, "date": b.start.date().isoformat(),
             "time": b.start.strftime("%H:%M"), "phone": b.phone} for b in call.calendar.bookings()]


@pytest.mark.parametrize("name", list(OTHER_CALLERS))
def test_each_caller_heard_perfectly_gets_exactly_their_booking(name: str) -> None:
    script = OTHER_CALLERS[name].script
    call = FakeCall()
    for line in script.lines:
        call.say(" ".join(filter(None, (line.text, line.then))))
    assert check(script, [], as_calendar(call), "completed", TODAY) == []
    assert call.ended  # the caller's goodbye ends the call


@pytest.mark.parametrize(("text", "at"), [
    ("Could I book a filling for Tuesday at one, no sorry, at four in the afternoon?", time(16, 0)),
    ("at ten, actually make that eleven", time(11, 0)),
    ("eleven not twelve", time(11, 0)),  # "not" is no correction: the first is meant
    ("Thursday at ten", time(10, 0)),
    ("Hi, yes. I want to book a cleaning. So I make free a clock.", time(15, 0)),  # Whisper's "three o'clock"
    ("Can we do it at free?", time(15, 0)),
])
def test_the_time_after_a_correction_wins(text: str, at: time) -> None:
    got = parse_time(text)
    assert got is not None and got.at == at


@pytest.mark.parametrize(("text", "day"), [
    ("Wednesday, no sorry, Friday at nine", date(2026, 3, 6)),
    ("Wednesday, I mean Thursday", date(2026, 3, 5)),
    ("Actually, can we make it Thursday instead?", date(2026, 3, 5)),
    ("Friday instead of Wednesday", date(2026, 3, 6)),
    ("Wednesday, not Tuesday", date(2026, 3, 4)),
    ("no later than four on Friday", date(2026, 3, 6)),
])
def test_the_day_after_a_correction_wins(text: str, day: date) -> None:
    assert parse_date(text, TODAY) == day


def test_free_is_no_time_outside_a_time_phrase() -> None:
    assert parse_time("I'm free") is None
    got = parse_time("are you free at ten")
    assert got is not None and got.at == time(10, 0)


@pytest.mark.parametrize(("text", "digits"), [
    ("Side side side, 1 9 9 2", "5551992"),
    ("Sign sign sign. 4-4-1-8.", "5554418"),
    ("Time time time. 662 Nero.", "5556620"),
    ("It's time time time free free 0 7", "5553307"),
    ("that is fine, 5 5 5 1 2 3 4", "5551234"),  # a real "fine" before the number adds no digit
    ("5 5 5 1 2 3 4, that's fine", "5551234"),  # nor after it, with a word between
])
def test_whisper_spellings_of_digits_inside_a_number(text: str, digits: str) -> None:
    assert parse_phone(text) == digits


def test_free_alone_is_no_digit() -> None:
    assert parse_phone("are you free, 5 5 5 1 2 3") is None  # six digits: no phone number


def test_the_bench_table_says_what_went_wrong_and_what_was_heard(capsys: pytest.CaptureFixture[str]) -> None:
    print_table([CallOutcome("clipped", "en-us-nyc", 195, [], ["Mike Miller."]),
                 CallOutcome("name-first", "en-gb-x-rp", 150, ["booked under 'Law'"], ["I'm caught."])])
    out = capsys.readouterr().out
    assert "booked as meant" in out and "WRONG: booked under 'Law'" in out and "2. " not in out
    assert "1. I'm caught." in out and "Whole booking calls as the caller meant: 1 of 2" in out


def test_the_bench_calls_the_second_set_by_name() -> None:
    from evals.calls.bench import SETS, main

    assert SETS["other"] is OTHER_CALLERS and "afternoon-then-time" in SETS["more"]
    with pytest.raises(SystemExit, match="afternoon-then-time"):  # names from the set asked for, none called
        main(["--set", "more", "--only", "no-such-caller"])
