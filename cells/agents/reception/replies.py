"""What the Reception agent says: dates, times and summaries phrased for the phone (and for eSpeak)."""

from __future__ import annotations

from datetime import date

from cells.agents.reception.clinic import ClinicConfig, spoken_hours
from cells.dialogue.saying import ordinal, say_date, say_hhmm, say_list, say_slots, say_time  # noqa: F401 - the clinic's replies use them from here


def say_phone(digits: str) -> str:
    """Phone digits one by one, grouped as callers say them, so that a voice reads them as digits:
    '5553307' -> '5 5 5, 3 3 0 7'."""
    groups = [digits[:3], digits[3:]] if len(digits) <= 8 else [digits[:3], digits[3:6], digits[6:]]
    return ", ".join(" ".join(g) for g in groups if g)


def service_name(clinic: ClinicConfig, key: str | None) -> str:
    s = clinic.service(key) if key else None
    return s.name if s else "appointment"


def services_sentence(clinic: ClinicConfig) -> str:
    plural = {"check-up and cleaning": "check-ups and cleanings", "filling": "fillings",
              "consultation": "consultations"}
    names = [plural.get(s.name, s.name) for s in clinic.services]
    return f"We offer {say_list(names, 'and')}."


def price_sentence(clinic: ClinicConfig, key: str | None) -> str:
    if key and (s := clinic.service(key)):
        return (f"A {s.name} is {s.price} {clinic.currency} and takes about {s.minutes} minutes."
                if s.key != "emergency" else
                f"An emergency visit is {s.price} {clinic.currency}, and we see urgent cases the same day.")
    prices = [f"a {s.name} is {s.price}" for s in clinic.services[:3]]
    return f"For example, {say_list(prices, 'and')} {clinic.currency}."


def duration_sentence(clinic: ClinicConfig, key: str | None) -> str:
    if key and (s := clinic.service(key)):
        return f"A {s.name} takes about {s.minutes} minutes."
    times = [f"a {s.name} takes about {s.minutes} minutes" for s in clinic.services[:3]]
    return f"For example, {say_list(times, 'and')}."


def hours_sentence(clinic: ClinicConfig, day: date | None = None) -> str:
    return spoken_hours(clinic, day.weekday() if day else None)


def location_sentence(clinic: ClinicConfig) -> str:
    return f"We're at {clinic.address}."


def booking_phrase(clinic: ClinicConfig, service: str | None, day: str, hhmm: str, today: date) -> str:
    """'your check-up and cleaning on Tuesday, March 5th at 9:30 a.m.'"""
    return f"{service_name(clinic, service)} on {say_date(day, today)} at {say_hhmm(hhmm)}"
