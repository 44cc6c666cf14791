"""Caller scripts for the demo's data-defined agents (Recruit and Stay, cells/agents/*/agent.json), each
with what it must leave in the tenant's records. Dates are spoken as a day of the month a few days ahead
of the call, so a script means the same stay whatever day it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cells.simulator.caller import CallerLine

AGENTS_DIR = Path(__file__).resolve().parents[1] / "agents"  # a path, not an import of the agents
_ORDINALS = {1: "1st", 2: "2nd", 3: "3rd", 21: "21st", 22: "22nd", 23: "23rd", 31: "31st"}
# Days of the month whose eSpeak NG ordinal ("the eighth") Whisper tiny.en reads back right in both
# phrasings the scripts use (measured on en-gb+m3); "the sixteenth" comes back as "15th".
CLEAR_DAYS = (3, 4, 8, 14, 18, 23, 24)


def clear_day(on_or_after: date) -> date:
    """The first day from `on_or_after` whose day of the month is one of CLEAR_DAYS (at most 10 days on)."""
    d = on_or_after
    while d.day not in CLEAR_DAYS:
        d += timedelta(days=1)
    return d


def spoken_day(d: date) -> str:
    """'the 13th': the next such day, which is `d` when it is under four weeks ahead. The month is left
    out: the recogniser hears eSpeak's "December" as "November" as often as not."""
    return f"the {_ORDINALS.get(d.day, f'{d.day}th')}"


@dataclass(frozen=True)
class VerticalScript:
    agent: str  # recruit | stay
    lines: Callable[[date], list[CallerLine]]
    kind: str  # the record kind the call writes (or must not write)
    expected: Callable[[date], dict[str, Any] | None]  # the arguments of the one record, None for none


def _start(today: date) -> date:
    return clear_day(today + timedelta(days=3))


def _recruit_lines(today: date) -> list[CallerLine]:
    return [CallerLine("Yes, now is fine."), CallerLine("Tom Becker."), CallerLine("Yes, I am."),
            CallerLine("Yes, I do."), CallerLine("Yes, I have one."), CallerLine("No, I can't do nights."),
            CallerLine(f"I could start on {spoken_day(_start(today))}."),
            CallerLine("Three years.")]


def _recruit_expected(today: date) -> dict[str, Any]:
    # 3 (forklift) + 2 (two years or more) + 1 (starts within two weeks); knocked out on the shifts.
    soon = _start(today) <= today + timedelta(days=14)
    return {"name": "Tom Becker", "over_18": True, "right_to_work": True, "forklift_licence": True,
            "shifts": False, "start_date": _start(today).isoformat(), "years_experience": 3,
            "score": 5 + soon, "knocked_out": True, "reason": "cannot work the rotating shifts"}


def _stay_days(today: date) -> tuple[date, date]:
    arrive = clear_day(today + timedelta(days=5))
    return arrive, clear_day(arrive + timedelta(days=1))


def _stay_lines(answer: str) -> Callable[[date], list[CallerLine]]:
    def lines(today: date) -> list[CallerLine]:
        arrive, leave = _stay_days(today)
        return [CallerLine(f"On {spoken_day(arrive)}."), CallerLine(f"On {spoken_day(leave)}."),
                CallerLine("Four people."), CallerLine("The family suite, please."),
                CallerLine("Tom Becker."),
                CallerLine(dtmf="5559814#"),  # keyed in, as callers do when asked for a number
                CallerLine(answer)]
    return lines


def _stay_expected(today: date) -> dict[str, Any]:
    arrive, leave = _stay_days(today)
    return {"check_in": arrive.isoformat(), "check_out": leave.isoformat(), "guests": 4,
            "room_type": "family suite", "name": "Tom Becker", "phone": "5559814"}


VERTICAL_SCRIPTS: dict[str, VerticalScript] = {
    "screen": VerticalScript("recruit", _recruit_lines, "screen_result", _recruit_expected),
    "reserve": VerticalScript("stay", _stay_lines("Yes, that's right."), "reservation", _stay_expected),
    "no-booking": VerticalScript("stay", _stay_lines("No, don't book it."), "reservation", lambda _: None),
}
DEFAULT_SCRIPT = {"recruit": "screen", "stay": "reserve"}
