"""Dates and times said for the phone (and for eSpeak): neutral forms any agent speaks."""

from __future__ import annotations

from datetime import date, time

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def say_time(t: time) -> str:
    """'9 a.m.', '2:30 p.m.', 'noon': the written form eSpeak reads naturally."""
    if t.hour == 12 and t.minute == 0:
        return "noon"
    hour = t.hour % 12 or 12
    suffix = "a.m." if t.hour < 12 else "p.m."
    return f"{hour} {suffix}" if t.minute == 0 else f"{hour}:{t.minute:02d} {suffix}"


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def say_date(d: date | str, today: date | None = None) -> str:
    """'Tuesday, March 5th'; always the full date, so a misheard weekday or day gets noticed."""
    d = date.fromisoformat(d) if isinstance(d, str) else d
    return f"{WEEKDAYS[d.weekday()].capitalize()}, {_MONTHS[d.month - 1]} {ordinal(d.day)}"


def say_hhmm(hhmm: str) -> str:
    return say_time(time.fromisoformat(hhmm))


def say_list(items: list[str], joiner: str = "or") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {joiner} " + items[-1]


def say_slots(slots: list[str]) -> str:
    return say_list([say_hhmm(s) for s in slots])
