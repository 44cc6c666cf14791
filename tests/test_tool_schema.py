"""Tool arguments are checked against the tool's JSON Schema before it runs: a wrong type, a value out of
range or off its list comes back as one clear error result for the model, and the tool does not run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cells.agents.reception.calendar import Calendar, CalendarTools
from cells.tools.base import FunctionTool, ToolRegistry

SCHEMA = {"type": "object", "required": ["party", "when"], "properties": {
    "party": {"type": "integer", "minimum": 1, "maximum": 8},
    "when": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d$"},
    "seating": {"type": "string", "enum": ["inside", "terrace"]},
    "notes": {"type": "string", "maxLength": 20}}}


def _registry() -> tuple[ToolRegistry, list[dict[str, Any]]]:
    ran: list[dict[str, Any]] = []

    def reserve(**args: Any) -> dict[str, Any]:
        ran.append(args)
        return {"ok": True}

    return ToolRegistry([FunctionTool("reserve_table", "Reserve.", SCHEMA, reserve, mutating=True)]), ran


@pytest.mark.parametrize(("args", "field", "words"), [
    ({"party": "four", "when": "2026-03-05T19:00"}, "party", "not of type 'integer'"),
    ({"party": 4.5, "when": "2026-03-05T19:00"}, "party", "not of type 'integer'"),
    ({"party": 0, "when": "2026-03-05T19:00"}, "party", "less than the minimum"),
    ({"party": 40, "when": "2026-03-05T19:00"}, "party", "greater than the maximum"),
    ({"party": 2, "when": "tomorrow at seven"}, "when", "does not match"),
    ({"party": 2, "when": "2026-03-05T19:00", "seating": "roof"}, "seating", "is not one of"),
    ({"party": 2, "when": "2026-03-05T19:00", "notes": "x" * 50}, "notes", "is too long"),
    ({"party": True, "when": "2026-03-05T19:00"}, "party", "not of type 'integer'"),
])
def test_bad_arguments_are_refused_before_the_tool_runs(args: dict[str, Any], field: str, words: str) -> None:
    registry, ran = _registry()
    result = asyncio.run(registry.call("reserve_table", args, confirmed=True))
    assert result["ok"] is False and result["error"] == "invalid_argument"
    assert result["fields"] == [field] and words in result["message"] and field in result["message"]
    assert ran == []


def test_good_arguments_run_and_a_null_optional_counts_as_not_given() -> None:
    registry, ran = _registry()
    result = asyncio.run(registry.call("reserve_table", {"party": 2, "when": "2026-03-05T19:00",
                                                         "seating": None}, confirmed=True))
    assert result == {"ok": True} and ran == [{"party": 2, "when": "2026-03-05T19:00", "seating": None}]


def test_every_problem_is_named_at_once() -> None:
    registry, _ = _registry()
    result = asyncio.run(registry.call("reserve_table", {"party": 99, "when": 7}, confirmed=True))
    assert result["fields"] == ["party", "when"]


def test_calendar_tools_refuse_a_service_off_the_list_and_a_date_of_the_wrong_type() -> None:
    registry = ToolRegistry(CalendarTools(Calendar()).adapters())
    result = asyncio.run(registry.call("check_availability", {"service": "massage", "date": 20260305}))
    assert result["error"] == "invalid_argument" and result["fields"] == ["date", "service"]
    assert "cleaning" in result["message"], "the model hears what it may ask for"


def test_a_tool_with_a_broken_schema_is_an_error_result_not_a_crash() -> None:
    tool = FunctionTool("odd", "Odd.", {"type": "object", "properties": {"a": {"type": "wat"}}},
                        lambda **_: {"ok": True})
    result = asyncio.run(ToolRegistry([tool]).call("odd", {"a": 1}))
    assert result["ok"] is False and result["error"] == "bad_tool_schema"
