"""The embedded clinic calendar and its agent tools."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import threading
from datetime import date, datetime
from pathlib import Path

import pytest

from cells.agents.reception.calendar import Calendar, CalendarTools, name_matches
from cells.providers.base import ToolCall
from cells.tools.base import ToolError, ToolRegistry, TransferToHuman

NOW = datetime(2026, 3, 2, 8, 30)  # Monday morning


@pytest.fixture
def cal() -> Calendar:
    return Calendar(clock=lambda: NOW)


@pytest.fixture
def registry(cal: Calendar) -> ToolRegistry:
    return ToolRegistry([*CalendarTools(cal).adapters(), TransferToHuman()])


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_book_and_find(cal: Calendar) -> None:
    b = cal.book("John Smith", "cleaning", datetime(2026, 3, 3, 9, 30), phone="5552187")
    assert (b.id, b.end, b.dentist) == ("BK0001", datetime(2026, 3, 3, 10, 30), "Dr. Patel")
    assert cal.find("john smith") == [b]
    assert cal.find("Smith") == [b]
    assert cal.find("jon smith") == [b]  # ASR spelling drift
    assert cal.find("Mary") == []


@pytest.mark.parametrize(("start", "code"), [
    (datetime(2026, 3, 2, 8, 0), "in_past"),
    (datetime(2026, 3, 8, 10, 0), "closed"),  # Sunday
    (datetime(2026, 3, 3, 7, 0), "outside_hours"),
    (datetime(2026, 3, 3, 16, 30), "outside_hours"),  # a 60-minute cleaning would end after 17:00
    (datetime(2026, 3, 7, 12, 30), "outside_hours"),  # Saturday closes at 13:00
    (datetime(2026, 3, 3, 9, 10), "not_on_grid"),
    (datetime(2027, 3, 3, 9, 0), "too_far"),
])
def test_validation(cal: Calendar, start: datetime, code: str) -> None:
    with pytest.raises(ToolError) as e:
        cal.book("A", "cleaning", start)
    assert e.value.code == code


def test_overlap_uses_every_dentist_then_refuses(cal: Calendar) -> None:
    cal.book("A", "cleaning", datetime(2026, 3, 3, 9, 0))
    b = cal.book("B", "cleaning", datetime(2026, 3, 3, 9, 30))
    assert b.dentist == "Dr. Nguyen"
    with pytest.raises(ToolError) as e:
        cal.book("C", "emergency", datetime(2026, 3, 3, 9, 45))
    assert e.value.code == "taken"
    assert cal.book("D", "emergency", datetime(2026, 3, 3, 10, 0)).dentist == "Dr. Patel"


def test_move_and_cancel(cal: Calendar) -> None:
    b = cal.book("A", "filling", datetime(2026, 3, 3, 9, 0))
    moved = cal.move(b.id, datetime(2026, 3, 4, 14, 0))
    assert moved.start == datetime(2026, 3, 4, 14, 0) and moved.end == datetime(2026, 3, 4, 15, 0)
    cal.move(b.id, datetime(2026, 3, 4, 14, 30))  # overlapping its own old slot is fine
    assert cal.cancel(b.id).id == b.id
    assert cal.bookings() == []
    with pytest.raises(ToolError):
        cal.cancel(b.id)


def test_persistence(tmp_path: Path) -> None:
    path = tmp_path / "calendar.json"
    cal = Calendar(clock=lambda: NOW, path=path)
    cal.book("John Smith", "cleaning", datetime(2026, 3, 3, 9, 30))
    again = Calendar(clock=lambda: NOW, path=path)
    assert [b.name for b in again.bookings()] == ["John Smith"]
    assert again.book("Mary", "cleaning", datetime(2026, 3, 3, 11, 0)).id == "BK0002"
    assert json.loads(path.read_text())["next_id"] == 3


def test_the_first_booking_creates_the_calendars_directory(tmp_path: Path) -> None:
    # A cell's worker keeps each agent's calendar under agents/<id>/, which exists only once used.
    path = tmp_path / "agents" / "0b7c" / "calendar.json"
    Calendar(clock=lambda: NOW, path=path).book("John Smith", "cleaning", datetime(2026, 3, 3, 9, 30))
    assert [b.name for b in Calendar(clock=lambda: NOW, path=path).bookings()] == ["John Smith"]


def test_thread_safety(cal: Calendar) -> None:
    """Many threads race for the same slot: exactly one booking per dentist succeeds."""
    wins: list[str] = []

    def attempt(i: int) -> None:
        try:
            wins.append(cal.book(f"P{i}", "cleaning", datetime(2026, 3, 3, 10, 0)).id)
        except ToolError:
            pass

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 2 and len(cal.bookings()) == 2


def _now() -> datetime:
    return NOW


def _book_in_another_process(path: str, i: int) -> str | None:
    try:
        return Calendar(clock=_now, path=path).book(f"P{i}", "cleaning", datetime(2026, 3, 3, 10, 0)).id
    except ToolError:
        return None


def test_workers_in_separate_processes_share_one_calendar(tmp_path: Path) -> None:
    """A region's workers book into one calendar file: a caller who booked through one worker can
    cancel through another, and two workers never give one dentist's slot to two callers."""
    path = str(tmp_path / "t1" / "calendar-a1.json")
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        wins = [w for w in pool.map(_book_in_another_process, [path] * 12, range(12)) if w]
    assert len(wins) == 2 and len(set(wins)) == 2  # two dentists, two bookings, distinct ids
    here, there = Calendar(clock=_now, path=path), Calendar(clock=_now, path=path)
    booked = here.book("John Smith", "filling", datetime(2026, 3, 4, 9, 0))
    assert [b.id for b in there.find("John Smith")] == [booked.id]
    there.cancel(booked.id)
    assert here.find("John Smith") == [] and len(here.bookings()) == 2


def test_free_slots(cal: Calendar) -> None:
    slots = cal.free_slots("cleaning", date(2026, 3, 7))  # Saturday 9-13
    assert [s.strftime("%H:%M") for s in slots] == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30",
                                                    "12:00"]
    assert cal.free_slots("cleaning", date(2026, 3, 8)) == []
    today = cal.free_slots("cleaning", date(2026, 3, 2))
    assert today[0] == NOW  # nothing before "now"


def test_name_matching() -> None:
    assert name_matches("john", "John Smith")
    assert name_matches("smyth john", "John Smyth")
    assert not name_matches("", "John Smith")
    assert not name_matches("peter", "John Smith")


# --- tools ------------------------------------------------------------------------------------------------


def test_schemas(registry: ToolRegistry) -> None:
    names = {s["function"]["name"] for s in registry.openai_schemas()}
    assert names == {"check_availability", "create_booking", "move_booking", "cancel_booking", "find_booking",
                     "transfer_to_human"}
    assert {s.name for s in registry.specs()} == names
    assert registry.is_mutating("create_booking") and not registry.is_mutating("check_availability")
    create = registry.get("create_booking")
    assert create is not None and create.parameters["required"] == ["name", "service", "start"]


def test_mutating_tools_need_confirmation(registry: ToolRegistry, cal: Calendar) -> None:
    args = {"name": "A", "service": "cleaning", "start": "2026-03-03T09:00"}
    refused = run(registry.call("create_booking", args))
    assert refused["error"] == "confirmation_required" and cal.bookings() == []
    done = run(registry.call("create_booking", args, confirmed=True))
    assert done["ok"] and done["booking"]["start"] == "2026-03-03T09:00"


def test_check_availability_exact_time(registry: ToolRegistry, cal: Calendar) -> None:
    cal.book("A", "cleaning", datetime(2026, 3, 3, 9, 0))
    cal.book("B", "cleaning", datetime(2026, 3, 3, 9, 30))
    r = run(registry.call("check_availability", {"service": "cleaning", "date": "2026-03-03",
                                                 "time_preference": "09:30"}))
    assert r["available"] is False and r["reason"] == "taken"
    assert r["slots"] == ["08:30", "10:00", "10:30"]  # nearest, with either dentist
    r = run(registry.call("check_availability", {"service": "cleaning", "date": "2026-03-03",
                                                 "time_preference": "11:00"}))
    assert r["available"] is True


@pytest.mark.parametrize(("pref", "check"), [
    ("morning", lambda h: h < 12), ("afternoon", lambda h: 12 <= h < 17), ("after 15:00", lambda h: h >= 15),
    ("before 10:00", lambda h: h < 10),
])
def test_check_availability_preference(registry: ToolRegistry, pref: str, check) -> None:  # type: ignore[no-untyped-def]
    r = run(registry.call("check_availability", {"service": "cleaning", "date": "2026-03-04",
                                                 "time_preference": pref}))
    assert r["slots"] and all(check(int(s[:2])) for s in r["slots"])


def test_check_availability_closed_day_offers_next(registry: ToolRegistry) -> None:
    r = run(registry.call("check_availability", {"service": "cleaning", "date": "2026-03-08"}))
    assert r["open"] is False and r["slots"] == [] and r["reason"] == "closed"
    assert r["next_available"]["date"] == "2026-03-09"


def test_tool_errors_are_results(registry: ToolRegistry) -> None:
    r = run(registry.call("check_availability", {"service": "massage", "date": "2026-03-03"}))
    assert r["ok"] is False and r["error"] == "invalid_argument" and "cleaning" in r["message"]
    r = run(registry.call("check_availability", {"service": "cleaning"}))
    assert r["error"] == "missing_argument"
    r = run(registry.call("create_booking", {"name": "A", "service": "cleaning", "start": "tuesday"},
                          confirmed=True))
    assert r["error"] == "bad_start"
    assert run(registry.call("nope", {}))["error"] == "unknown_tool"


def test_taken_booking_lists_alternatives(registry: ToolRegistry, cal: Calendar) -> None:
    cal.book("A", "cleaning", datetime(2026, 3, 3, 9, 0))
    cal.book("B", "cleaning", datetime(2026, 3, 3, 9, 0))
    r = run(registry.call("create_booking", {"name": "C", "service": "cleaning", "start": "2026-03-03T09:00"},
                          confirmed=True))
    assert r["error"] == "taken" and "10:00" in r["alternatives"]


def test_move_cancel_find_by_name(registry: ToolRegistry, cal: Calendar) -> None:
    cal.book("John Smith", "cleaning", datetime(2026, 3, 3, 9, 0))
    found = run(registry.call("find_booking", {"name": "john smith"}))
    assert [b["time"] for b in found["bookings"]] == ["09:00"]
    moved = run(registry.call("move_booking", {"name": "John Smith", "new_start": "2026-03-05T15:00"},
                              confirmed=True))
    assert moved["booking"]["start"] == "2026-03-05T15:00" and moved["previous_start"] == "2026-03-03T09:00"
    cancelled = run(registry.call("cancel_booking", {"name": "john smith"}, confirmed=True))
    assert cancelled["cancelled"]["id"] == "BK0001" and cal.bookings() == []
    again = run(registry.call("cancel_booking", {"name": "john smith"}, confirmed=True))
    assert again["error"] == "not_found"


def test_ambiguous_name(registry: ToolRegistry, cal: Calendar) -> None:
    cal.book("John Smith", "cleaning", datetime(2026, 3, 3, 9, 0))
    cal.book("John Smith", "filling", datetime(2026, 3, 4, 9, 0))
    r = run(registry.call("cancel_booking", {"name": "john smith"}, confirmed=True))
    assert r["error"] == "ambiguous" and len(r["bookings"]) == 2


def test_registry_run_wraps_tool_message(registry: ToolRegistry) -> None:
    msg = run(registry.run(ToolCall(id="call_0", name="transfer_to_human", arguments={"reason": "asked"})))
    assert msg.role == "tool" and msg.tool_call_id == "call_0"
    assert json.loads(msg.content) == {"ok": True, "status": "transferring"}
