"""A call's outcome judged against its scenario's expectations. Pure: an outcome recorded once (JSON)
can be judged again, so a wrong expectation is shown to fail without placing a call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from cells.simulator.booking_check import check
from cells.simulator.scripts import BookingScript, Expected, in_next_week, next_weekday, same_week
from evals.bench.confirmation import violations
from evals.bench.scenario import WEEKDAYS, Scenario
from evals.stt.wer import normalise


def day_resolver(spec: str) -> Callable[[date], date]:
    """ "next:thu" -> the first Thursday after today; "next_week:thu"; "same_week:wed>fri"."""
    kind, _, rest = spec.partition(":")
    if kind == "same_week":
        first, then = (WEEKDAYS[d] for d in rest.split(">"))
        return lambda t: same_week(t, first, then)
    wd = WEEKDAYS[rest]
    return (lambda t: next_weekday(t, wd)) if kind == "next" else (lambda t: in_next_week(t, wd))


def contains_phrase(heard: str, phrase: str) -> bool:
    """The phrase's words, in order and adjacent, in the heard text (both normalised: case, punctuation,
    '2 p.m.' vs 'two p m')."""
    h, p = normalise(heard), normalise(phrase)
    return bool(p) and any(h[i:i + len(p)] == p for i in range(len(h) - len(p) + 1))


def booking_problems(scenario: Scenario, outcome: dict[str, Any]) -> list[str]:
    e = scenario.expect
    if e.booking is None and not e.nothing_written:
        return []
    expected = None
    if e.booking is not None:
        b = e.booking
        expected = Expected(b.service, day_resolver(b.day), b.time, b.name, b.phone)
    today = date.fromisoformat(outcome["today"])
    problems = check(BookingScript([], expected), outcome["bookings_before"], outcome["bookings_after"],
                     None, today, outcome.get("seeded", []))
    return [f"calendar: {p}" for p in problems]


def evaluate(scenario: Scenario, outcome: dict[str, Any], mutating: tuple[str, ...]) -> list[str]:
    """Why the call fails its scenario ([] when it passes)."""
    if outcome.get("error"):
        return [f"the call did not run: {outcome['error']}"]
    e = scenario.expect
    why = booking_problems(scenario, outcome)
    if e.bookings_after is not None and len(outcome["bookings_after"]) != e.bookings_after:
        why.append(f"calendar: {len(outcome['bookings_after'])} booking(s) after the call, "
                   f"wanted {e.bookings_after}")
    disposition = outcome.get("disposition") or ""
    if e.disposition and not disposition.startswith(e.disposition):
        why.append(f"call ended {disposition!r}, wanted {e.disposition!r}")
    heard = " ".join(outcome.get("agent_heard", []))
    meant = " ".join(outcome.get("agent_meant", []))
    for options in e.hear:
        if not any(contains_phrase(heard, p) for p in options):
            said = any(contains_phrase(meant, p) for p in options)
            why.append(f"caller never heard {' / '.join(map(repr, options))}"
                       + (" (the agent said it, the audio did not carry it)" if said else ""))
    for phrase in e.never_say:
        for label, text in (("said", meant), ("was heard saying", heard)):
            if contains_phrase(text, phrase):
                why.append(f"agent {label} {phrase!r}")
                break
    tools = [ev.get("name") for ev in outcome.get("events", []) if ev.get("kind") == "tool_call"]
    why += [f"tool {t} was never called" for t in e.tools_called if t not in tools]
    why += [f"tool {t} was called" for t in e.tools_not_called if t in tools]
    if e.confirmation:
        why += [f"confirmation: {v}" for v in violations(outcome.get("events", []), mutating)]
    for i, (turn, res) in enumerate(zip(scenario.turns, outcome.get("turns", []), strict=False)):
        bound = turn.max_latency_ms if turn.max_latency_ms is not None else e.max_latency_ms
        lat = res.get("latency_ms")
        if bound is not None and turn.kind not in ("silence", "hang_up") and not res.get("barge_in"):
            if lat is None:
                why.append(f"turn {i + 1}: no agent audio after it (bound {bound:g} ms)")
            elif lat > bound:
                why.append(f"turn {i + 1}: agent answered after {lat:.0f} ms, bound {bound:g} ms")
    return why
