"""A record that declares a vendor tool (`calcom`) runs through the flow agent, the call loop's Reply
and its ConfirmationGate: Cal.com is asked only after the caller's yes, books once, and a Cal.com that
fails is never reported to the caller as done. The contract and the worker agree on the kinds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from test_flow_agent import Call
from vendor_fakes.calcom_fake import API_KEY, EVENT_TYPE_ID, FakeCalcom
from vendor_fakes.scripted import threaded

from cells.agent import AgentEnv, agent_from_spec
from cells.contract.flows import VENDOR_TOOL_KINDS, agent_problems
from cells.flows.agent import FlowAgent
from cells.tools.vendors import VENDOR_KINDS

NOW = datetime(2026, 3, 2, 9, 0)  # a Monday
ENV = AgentEnv(clock=lambda: NOW, secrets={"clinic_cal": API_KEY}.get, allow_private_tools=True)
ZONE = "Europe/London"


def clinic(url: str) -> dict[str, Any]:
    """The clinic as a tenant declares it: flows, and Cal.com by reference (no key in the record)."""
    return {
        "id": "clinic-cal", "tenant_id": "t1", "name": "Bright Smile Dental", "vertical": "reception",
        "tools": [{"name": "book_appointment", "kind": "calcom", "operation": "book", "secret": "clinic_cal",
                   "timeout_s": 1.0, "requires_confirmation": True,
                   "config": {"base_url": url, "event_type_id": EVENT_TYPE_ID, "time_zone": ZONE,
                              "default_email": "desk@brightsmile.example"}}],
        "flows": {"main": {"start": "intake", "states": {
            "intake": {"prompt": "I can book you in.",
                       "slots": [{"name": "day", "type": "date", "ask": "Which day suits you?"},
                                 {"name": "time", "type": "time", "ask": "At what time?"},
                                 {"name": "name", "type": "name", "ask": "What name should I put it under?"}],
                       "next": ["book"]},
            "book": {"tool": "book_appointment", "arguments": {"day": "day", "time": "time", "name": "name"},
                     "next": ["booked"], "on_failure": "failed", "on_decline": "intake"},
            "booked": {"prompt": "You're booked for {day} at {time}. Goodbye.", "end": True},
            "failed": {"prompt": "Sorry, I could not book that; nothing has been booked. Goodbye.",
                       "end": True},
        }}},
        "compliance": {"record_calls": False},
    }


@pytest.fixture()
def cal() -> Iterator[FakeCalcom]:
    with threaded(FakeCalcom(zone=ZONE)) as server:
        yield server  # type: ignore[misc]


def agent(url: str) -> FlowAgent:
    built = agent_from_spec(clinic(url), data_dir=None, env=ENV)
    assert isinstance(built, FlowAgent)
    return built


def up_to_the_read_back(call: Call) -> str:
    assert call.caller("Thursday please.") == "At what time?"
    assert call.caller("At eleven.") == "What name should I put it under?"
    return call.caller("My name is Ann Lee.")


def test_the_contract_and_the_worker_know_the_same_vendor_kinds() -> None:
    assert set(VENDOR_TOOL_KINDS) == set(VENDOR_KINDS)
    record = clinic("http://127.0.0.1:9")
    assert agent_problems("reception", record["flows"], record["tools"]) == []
    assert "clinic_cal" in json.dumps(record) and API_KEY not in json.dumps(record)


def test_the_api_takes_a_vendor_tool_by_reference_and_refuses_a_credential_in_its_config() -> None:
    from typing import get_args

    from pydantic import ValidationError

    from control.api.schemas import Tool

    kinds = {k for arg in get_args(Tool.model_fields["kind"].annotation) for k in get_args(arg)}
    assert kinds == {"http", "record", *VENDOR_TOOL_KINDS}
    declared = clinic("https://api.cal.com")["tools"][0]
    assert Tool.model_validate(declared).model_dump() == {**declared, "description": "", "parameters": {}}
    for leak in ({"api_key": API_KEY}, {"access_token": "x"}, {"password": "x"}):
        with pytest.raises(ValidationError, match="config holds credentials"):
            Tool.model_validate({**declared, "config": {**declared["config"], **leak}})
    named = {**declared["config"], "client_token_secret": "mews_client"}
    assert Tool.model_validate({**declared, "config": named}).config["client_token_secret"] == "mews_client"


def test_cal_com_is_asked_only_after_the_callers_yes_and_books_once(cal: FakeCalcom) -> None:
    call = Call(agent(cal.url))
    readback = up_to_the_read_back(call)
    assert readback.startswith("Just to confirm: book appointment") and "Ann Lee" in readback
    assert cal.seen == []  # nothing reached Cal.com before the yes
    done = call.caller("Yes please.")
    assert done.startswith("You're booked for Thursday, March 5th at 11 a.m."), done
    (booking,) = cal.bookings.values()
    assert booking["start"] == "2026-03-05T11:00:00.000Z" and booking["attendees"][0]["name"] == "Ann Lee"
    assert cal.count("POST", "/v2/bookings") == 1 and call.controls == ["end_call"]


def test_a_no_at_the_read_back_books_nothing(cal: FakeCalcom) -> None:
    call = Call(agent(cal.url))
    up_to_the_read_back(call)
    said = call.caller("No, don't book it.")
    assert cal.seen == [] and cal.bookings == {}
    assert "booked" not in said


@pytest.mark.parametrize("mode", ["status", "hang", "lost"])
def test_a_cal_com_that_fails_is_never_reported_as_done(cal: FakeCalcom, mode: str) -> None:
    cal.fail_next("POST", "/v2/bookings", mode, 500, message="database unavailable")
    call = Call(agent(cal.url))
    up_to_the_read_back(call)
    said = call.caller("Yes.")
    results = [json.loads(m.content) for m in call.history if m.role == "tool"]
    failed = [r for r in results if r.get("ok") is False and str(r.get("error", "")).startswith("vendor_")]
    assert failed, results
    assert "You're booked" not in said and "could not book that" in said, said
    assert API_KEY not in json.dumps(results)
