"""Recruit and Stay as data, turn by turn (no audio): the declared scoring and knock-out rules, the checks
that refuse a broken declaration, the `record` tool's idempotency and honest failure, and both agents'
flows through the call loop's own Reply and confirmation gate, writing to a real SQLite record store."""

from __future__ import annotations

import asyncio
import copy
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from verticals_harness import TENANT, TextCall, build, record

from cells.contract.flow_rules import assess
from cells.contract.flows import agent_problems
from cells.contract.records import Capacity, RecordRefused, RecordWrite, check_capacity
from cells.flows.slots import read_choice
from cells.tools.record import CURRENT_CALL, CallRef, RecordTool
from cells.tools.record_stores import SqliteRecordStore

NOW = datetime(2026, 3, 2, 9, 0)  # a Monday
TODAY = NOW.date()
RULES = record("recruit")["flows"]["main"]["states"]["assess"]["assess"]


def answers(**changes: Any) -> dict[str, Any]:
    return {"name": "Tom Becker", "over_18": True, "right_to_work": True, "forklift_licence": True,
            "shifts": True, "start_date": "2026-03-09", "years_experience": 3, **changes}


# --- scoring rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "score", "knocked_out", "reason"), [
    ({}, 8, False, ""),  # 3 forklift + 2 (2+ years) + 1 (starts within 14 days) + 2 shifts
    ({"years_experience": 6}, 9, False, ""),  # the 5+ years point too
    ({"years_experience": 1, "forklift_licence": False}, 3, False, ""),
    ({"start_date": "2026-03-17"}, 7, False, ""),  # today+15: past the two weeks
    ({"start_date": "2026-03-16"}, 8, False, ""),  # today+14: within them
    ({"shifts": False}, 6, True, "cannot work the rotating shifts"),
    ({"right_to_work": False, "shifts": False}, 6, True, "no right to work"),  # the first rule that holds
    ({"over_18": False}, 8, True, "under 18"),
])
def test_the_recruit_rubric_scores_and_knocks_out_by_its_declared_rules(
        changes: dict[str, Any], score: int, knocked_out: bool, reason: str) -> None:
    assert assess(RULES, answers(**changes), TODAY) == {"score": score, "knocked_out": knocked_out,
                                                        "reason": reason}


def test_a_rule_on_an_unanswered_slot_holds_only_for_ne() -> None:
    rules = {"points": [{"slot": "x", "op": "eq", "value": None, "points": 1},
                        {"slot": "x", "op": "ne", "value": 3, "points": 10},
                        {"slot": "y", "op": "gte", "value": 2, "points": 100}],
             "knock_out": [{"slot": "x", "op": "answered", "reason": "r"}]}
    assert assess(rules, {"y": "text"}, TODAY) == {"score": 10, "knocked_out": False, "reason": ""}


# --- declarations the API refuses -------------------------------------------------------------------

def _problems(mutate: Any, vertical: str = "recruit") -> list[str]:
    spec = copy.deepcopy(record(vertical))
    mutate(spec)
    return agent_problems(spec["vertical"], spec["flows"], spec["tools"])


def test_the_demo_agents_are_valid() -> None:
    assert _problems(lambda s: None, "recruit") == [] and _problems(lambda s: None, "stay") == []


@pytest.mark.parametrize(("vertical", "mutate", "expected"), [
    ("recruit", lambda s: s["flows"]["main"]["states"]["assess"]["assess"]["points"][0].update(op="about"),
     "rule op 'about'"),
    ("recruit", lambda s: s["flows"]["main"]["states"]["assess"]["assess"]["points"][0].update(slot="age"),
     "reads slot 'age', which no node asks for"),
    ("recruit", lambda s: s["flows"]["main"]["states"]["assess"]["assess"]["knock_out"][0].pop("reason"),
     "a knock-out rule needs a reason"),
    ("recruit", lambda s: s["flows"]["main"]["states"]["assess"]["assess"]["points"][0].update(points="3"),
     "a points rule needs a number of points"),
    ("recruit", lambda s: s["flows"]["main"]["states"]["assess"].update(assess={"bonus": []}),
     "unknown key 'bonus'"),
    ("recruit", lambda s: s["tools"][0].pop("record_kind"), "a record tool needs a record_kind"),
    ("stay", lambda s: s["flows"]["main"]["states"]["party"]["slots"][1].pop("options"),
     "a choice slot needs a list of options"),
    ("stay", lambda s: s["tools"][0]["capacity"].update(limits={"twin room": -1}),
     "capacity limits must be whole numbers"),
    ("stay", lambda s: s["tools"][0]["capacity"].pop("per"), "capacity needs 'per'"),
])
def test_a_broken_declaration_is_refused_with_its_reason(vertical: str, mutate: Any, expected: str) -> None:
    problems = _problems(mutate, vertical)
    assert any(expected in p for p in problems), problems


# --- the record tool --------------------------------------------------------------------------------

STAY_ARGS = {"check_in": "2026-03-12", "check_out": "2026-03-15", "guests": 2, "room_type": "twin room",
             "name": "Tom Becker", "phone": "5559814"}


def _run(tool: RecordTool, args: dict[str, Any], call: str | None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        token = CURRENT_CALL.set(CallRef(call) if call else None)
        try:
            return await tool.call(args)
        finally:
            CURRENT_CALL.reset(token)
    return asyncio.run(go())


def _tool(store: Any, tenant: str = TENANT, capacity: Capacity | None = None) -> RecordTool:
    return RecordTool("reserve_room", "", {}, kind="reservation", store=store, tenant_id=tenant,
                      agent_id="agent-1", mutating=True, capacity=capacity)


def test_a_repeated_write_of_the_same_call_stores_once(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "records.sqlite3")
    first = _run(_tool(store), STAY_ARGS, "CA1")
    again = _run(_tool(store), STAY_ARGS, "CA1")
    assert first["ok"] and first["status"] == "stored" and again == {**first, "status": "already_stored"}
    other_call = _run(_tool(store), STAY_ARGS, "CA2")  # the same stay booked on another call is another row
    changed = _run(_tool(store), {**STAY_ARGS, "guests": 1}, "CA1")
    assert other_call["status"] == changed["status"] == "stored"
    assert len({first["record_id"], other_call["record_id"], changed["record_id"]}) == 3
    assert [r["call"] for r in store.list(TENANT)] == ["CA1", "CA2", "CA1"]
    assert store.list("another-tenant") == []
    _run(_tool(store, tenant="another-tenant"), STAY_ARGS, "CA1")  # same key, other tenant: its own row
    assert len(store.list("another-tenant")) == 1 and len(store.list(TENANT)) == 3


class DeadStore:
    async def put(self, write: RecordWrite) -> Any:
        raise ConnectionRefusedError("the database is down")


class SlowStore:
    async def put(self, write: RecordWrite) -> Any:
        await asyncio.sleep(60)


def test_a_dead_slow_or_missing_store_says_failed_never_done(tmp_path: Path) -> None:
    for store in (DeadStore(), None, SqliteRecordStore(tmp_path)):  # tmp_path is a directory, not a file
        result = _run(_tool(store), STAY_ARGS, "CA1")
        assert result["ok"] is False and result["error"] == "record_store_unavailable", result
    slow = _tool(SlowStore())
    slow.budget_s = 0.05
    assert _run(slow, STAY_ARGS, "CA1")["error"] == "record_store_unavailable"
    assert _run(_tool(SqliteRecordStore(tmp_path / "r.sqlite3")), STAY_ARGS, None)["error"] == "no_call"


def test_capacity_counts_overlapping_stays_of_the_same_room_type() -> None:
    cap = Capacity("room_type", "check_in", "check_out", {"twin room": 1, "family suite": 2})
    held = [STAY_ARGS]
    with pytest.raises(RecordRefused, match="no twin room"):
        check_capacity(cap, {**STAY_ARGS, "check_in": "2026-03-14", "check_out": "2026-03-16"}, held)
    check_capacity(cap, {**STAY_ARGS, "check_in": "2026-03-15", "check_out": "2026-03-16"}, held)  # next in
    check_capacity(cap, {**STAY_ARGS, "room_type": "family suite"}, held)
    with pytest.raises(RecordRefused, match="not one of"):
        check_capacity(cap, {**STAY_ARGS, "room_type": "penthouse"}, held)
    with pytest.raises(RecordRefused, match="must be after"):
        check_capacity(cap, {**STAY_ARGS, "check_out": "2026-03-12"}, [])


# --- whole flows, turn by turn ----------------------------------------------------------------------

STAY_TURNS = ["March the twelfth.", "On March 15th.", "Two of us.", "The harbour double please.",
              "Tom Becker.", "Five five five, nine eight one four."]


@pytest.mark.parametrize(("nights", "result"), [
    ("No, I can't do nights.", {"shifts": False, "score": 6, "knocked_out": True,
                                "reason": "cannot work the rotating shifts"}),
    ("Yes, all three.", {"shifts": True, "score": 8, "knocked_out": False, "reason": ""}),
])
def test_a_screen_writes_its_score_and_knock_out_to_the_ats(tmp_path: Path, nights: str,
                                                             result: dict[str, Any]) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    call = TextCall(build("recruit", tmp_path, NOW, store))
    for text in ["Yes, now is fine.", "Tom Becker.", "Yes I am.", "Yes.", "Yes, I do.", nights,
                 "Next Monday.", "Three years."]:
        said = call.caller(text)
    assert "that's all the questions" in said and call.controls == ["end_call"]
    [screen] = store.list(TENANT, kind="screen_result")
    assert screen["arguments"] == {**answers(), **result}


def test_a_candidate_who_has_no_time_is_not_screened(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    call = TextCall(build("recruit", tmp_path, NOW, store))
    assert "call you back" in call.caller("No, not right now.")
    assert store.list(TENANT) == []


def _stay(tmp_path: Path, store: Any) -> tuple[TextCall, str]:
    call = TextCall(build("stay", tmp_path, NOW, store))
    for text in STAY_TURNS:
        said = call.caller(text)
    return call, said


def test_the_reservation_is_read_back_and_written_only_after_yes(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    call, readback = _stay(tmp_path, store)
    assert readback.startswith("Just to confirm: reserve room, check in Thursday, March 12th, check out "
                               "Sunday, March 15th, guests 2, room type harbour double")
    assert store.list(TENANT) == []  # nothing before the yes
    assert "You're booked in the harbour double" in call.caller("Yes please.")
    [booked] = store.list(TENANT, kind="reservation")
    assert booked["arguments"] == {"check_in": "2026-03-12", "check_out": "2026-03-15", "guests": 2,
                                   "room_type": "harbour double", "name": "Tom Becker", "phone": "5559814"}


@pytest.mark.parametrize("answer", ["No, don't book it.", "Erm.", "Hmm, maybe."])
def test_no_or_no_clear_answer_writes_nothing(tmp_path: Path, answer: str) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    call, _ = _stay(tmp_path, store)
    said = " ".join(call.caller(answer) for _ in range(3))
    assert store.list(TENANT) == [] and "booked in" not in said


def test_a_full_hotel_or_a_dead_store_is_never_reported_as_booked(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    tools = record("stay")["tools"]
    tools[0]["capacity"]["limits"]["harbour double"] = 0
    full = TextCall(build("stay", tmp_path, NOW, store, tools=tools))
    for text in [*STAY_TURNS, "Yes."]:
        said = full.caller(text)
    assert "could not reserve" in said and "You're booked" not in said and store.list(TENANT) == []
    dead = TextCall(build("stay", tmp_path, NOW, DeadStore()))
    for text in [*STAY_TURNS, "Yes."]:
        said = dead.caller(text)
    assert "could not reserve" in said and "You're booked" not in said


def test_the_embedded_worker_keeps_records_in_its_data_dir(tmp_path: Path) -> None:
    from cells.agent import agent_from_spec

    agent = agent_from_spec(record("stay"), data_dir=tmp_path)
    tool = agent.tools.registry.get("reserve_room")
    assert isinstance(tool, RecordTool) and isinstance(tool.store, SqliteRecordStore)
    assert tool.store.path == tmp_path / "records.sqlite3" and tool.capacity is not None
    assert isinstance(date.today(), date)


@pytest.mark.parametrize(("said", "day"), [
    ("I can start on the 8.", "2026-03-08"), ("On the 14", "2026-03-14"), ("On the 1st.", "2026-04-01"),
    ("at the 10 am", None)])
def test_a_day_of_the_month_as_the_recogniser_writes_it(said: str, day: str | None) -> None:
    from cells.flows.slots import read_slot

    assert read_slot("date", said, TODAY) == day


ROOMS = [("cosy double", ["cosy", "cozy"]), ("harbour double", ["harbour", "harbor"]),
         ("twin room", ["twin"]), ("family suite", ["family"]), ("captain's suite", ["captain"])]


@pytest.mark.parametrize(("heard", "room"), [
    ("The family's weed. Clean.", "family suite"),  # tiny.en's rendering of "the family suite, please"
    ("the families one", "family suite"),
    ("the captain's suite", "captain's suite"),
    ("twins please", "twin room"),
    ("a double", None),  # two options are doubles: ask again rather than guess
    ("the cheapest", None),
])
def test_a_room_is_chosen_by_its_word_also_when_heard_as_possessive_or_plural(heard: str,
                                                                               room: str | None) -> None:
    assert read_choice(ROOMS, heard) == room
