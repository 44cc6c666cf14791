"""The worker's agent tools answer the call loop's argument check, so a change the tool would refuse is
never read back to the caller for confirmation (cells/call/reply.py asks `validate` before the gate)."""

from __future__ import annotations

from cells.worker.agent import ReceptionAgent


def test_agent_tools_refuse_bad_booking_arguments_without_running_them(tmp_path) -> None:
    agent = ReceptionAgent(data_dir=tmp_path)
    error = agent.tools.validate("create_booking", {"name": 42})
    assert error is not None and error.get("ok") is False
    assert agent.calendar.bookings() == []


def test_agent_tools_accept_an_unknown_tool_as_an_error_not_a_crash(tmp_path) -> None:
    agent = ReceptionAgent(data_dir=tmp_path)
    error = agent.tools.validate("drop_all_tables", {})
    assert error is not None and error.get("error") == "unknown_tool"
