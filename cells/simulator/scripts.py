"""Named caller scripts for `autospeak call`.

The booking scripts are written as callers really speak (several facts in one breath, a change of
mind, a number read out with a pause, "yep" for yes) and each knows the calendar it must leave behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from cells.simulator.caller import CallerLine

MON, TUE, WED, THU, FRI = range(5)


def next_weekday(today: date, weekday: int) -> date:
    """The first `weekday` after today (never today): what "on Friday" or "next Friday" resolves to."""
    return today + timedelta(days=(weekday - today.weekday() - 1) % 7 + 1)


def in_next_week(today: date, weekday: int) -> date:
    """"next Thursday" as the clinic reads it: the Thursday of next week, even when this week's is ahead."""
    d = next_weekday(today, weekday)
    return d + timedelta(days=7) if d.isocalendar()[1] == today.isocalendar()[1] else d


def same_week(today: date, first: int, then: int) -> date:
    """`then` in the week of the first `first` after today: "Wednesday... actually Friday instead"."""
    d = next_weekday(today, first)
    return d + timedelta(days=then - first)


@dataclass(frozen=True)
class Expected:
    """The one booking the call must leave in the calendar (None for a call that must book nothing)."""
    service: str
    day: Callable[[date], date]
    time: str  # "HH:MM"
    name: str  # the surname, matched case-insensitively
    phone: str | None


@dataclass(frozen=True)
class Seed:
    """A booking already in the calendar before the call (for a caller moving an appointment)."""
    name: str
    service: str
    day: Callable[[date], date]
    time: str
    phone: str | None = None


@dataclass(frozen=True)
class BookingScript:
    lines: list[CallerLine]
    expected: Expected | None
    seed: list[Seed] = field(default_factory=list)
    # How the call must end when it is not a booking ("transfer" also matches "transfer_unavailable",
    # what a worker with no front-desk number configured records after trying).
    disposition: str | None = None


BOOKING_SCRIPTS: dict[str, BookingScript] = {
    # Service, day, time and name in one sentence; the number spoken in one go.
    "one-breath": BookingScript([
        CallerLine("Hi, I'd like to get my teeth cleaned next Thursday at two in the afternoon, "
                   "my name's Anna Kowalski."),
        CallerLine("Sure, it's five five five, three four one two."),
        CallerLine("Yes, that's right."),
        CallerLine("No, that's everything. Bye."),
    ], Expected("cleaning", lambda t: in_next_week(t, THU), "14:00", "kowalski", "5553412")),
    # The caller changes the day after giving it.
    "change-day": BookingScript([
        CallerLine("Hello, I think I need a filling. Could I come in on Wednesday at nine in the morning?"),
        CallerLine("Oh wait, actually, can we do Friday instead?"),
        CallerLine("Tom Becker."),
        CallerLine("It's five five five, six oh two one."),
        CallerLine("Yes please."),
        CallerLine("That's all, thanks. Goodbye."),
    ], Expected("filling", lambda t: same_week(t, WED, FRI), "09:00", "becker", "5556021")),
    # The phone number read out in two pieces with a thinking pause between them.
    "phone-pause": BookingScript([
        CallerLine("Hi there, can I book a check-up for Monday at eleven?"),
        CallerLine("It's David Chen."),
        CallerLine("Yeah, it's five five five,", then="nine eight one four.", gap_ms=900),
        CallerLine("Yes, correct."),
        CallerLine("No thank you, bye."),
    ], Expected("cleaning", lambda t: next_weekday(t, MON), "11:00", "chen", "5559814")),
    # Casual confirmations.
    "casual-yes": BookingScript([
        CallerLine("Hey, could I get my teeth whitened on Tuesday at three?"),
        CallerLine("Priya Shah."),
        CallerLine("Five five five, seven seven two four."),
        CallerLine("Yep, that's right."),
        CallerLine("Nope, that's it, cheers."),
    ], Expected("whitening", lambda t: next_weekday(t, TUE), "15:00", "shah", "5557724")),
    # Moving an existing appointment to another day and time.
    "move": BookingScript([
        CallerLine("Hi, I need to move my appointment. It's under James Wilson."),
        CallerLine("Could we do Wednesday at four in the afternoon instead?"),
        CallerLine("Yeah, go ahead."),
        CallerLine("No, that's all. Thanks, bye."),
    ], Expected("cleaning", lambda t: next_weekday(t, WED), "16:00", "wilson", "5554470"),
        seed=[Seed("James Wilson", "cleaning", lambda t: next_weekday(t, MON), "10:00", "5554470")]),
    # The pause inside the number and "yep" in one short call, with a name Whisper tiny.en gets in the
    # en-gb+m3 voice (most of the names above it does not): the whole-call test's booking.
    "quick-checkup": BookingScript([
        CallerLine("Hi, can I book a check-up for Monday at eleven please?"),
        CallerLine("Tom Becker."),
        CallerLine("Yeah, it's five five five,", then="nine eight one four.", gap_ms=900),
        CallerLine("Yep, that's right."),
        CallerLine("No thanks, bye."),
    ], Expected("cleaning", lambda t: next_weekday(t, MON), "11:00", "becker", "5559814")),
    # A caller who wants a person: the call is handed over and nothing is booked.
    "ask-person": BookingScript([
        CallerLine("Hi, can I just speak to a real person please?"),
        CallerLine("Okay, thanks."),
    ], None, disposition="transfer"),
}

SCRIPTS: dict[str, list[CallerLine]] = {
    "booking": [
        CallerLine("Hi, I would like to book a cleaning please."),
        CallerLine("Next Tuesday at ten in the morning."),
        CallerLine("My name is Maria Lopez."),
        CallerLine(dtmf="5552187#"),  # callers key numbers in when asked; the recogniser is weak at digits
        CallerLine("Yes, please."),
        CallerLine("No, that's all. Thank you, goodbye."),
    ],
    "hours": [
        CallerLine("What are your opening hours?"),
        CallerLine("Thank you, goodbye."),
    ],
    # Free questions: one only the clinic's knowledge files answer, one they do not (the agent must say it
    # does not know and offer a transfer, which the caller declines).
    "knowledge": [
        CallerLine("Hi, is there wifi in the waiting room?"),
        CallerLine("And do you sell gift cards?"),
        CallerLine("No, thank you."),
        CallerLine("That's all, goodbye."),
    ],
    # The caller talks over the agent's greeting once it has been disclosed, then over a reply.
    "barge-in": [
        CallerLine("Hi, I would like to book a cleaning please."),
        CallerLine("Actually, what are your opening hours?", barge_in_after_ms=600),
        CallerLine("Thank you, goodbye."),
    ],
    **{name: s.lines for name, s in BOOKING_SCRIPTS.items()},
}
