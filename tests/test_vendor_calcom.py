"""The `calcom` tool kind against a local server speaking Cal.com API v2: the requests are Cal.com's
(bearer key, cal-api-version, UTC starts, attendee), a retried or repeated write books, moves or
cancels once, and every failure (4xx, 401, 5xx, timeout, a 200 that is not Cal.com's JSON) comes back
as `ok: false` with nothing booked and no secret in it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from vendor_fakes.calcom_fake import API_KEY, EVENT_TYPE_ID, FakeCalcom

from cells.tools.base import ToolRegistry
from cells.tools.vendors import CALL_SCOPE, build_vendor_tool
from cells.tools.vendors.base import idempotency_key

ZONE = "Europe/Berlin"  # UTC+1 in March: 11:00 there is 10:00Z
ANN = {"day": "2026-03-05", "time": "11:00", "name": "Ann Lee"}


def record(url: str, operation: str = "book", **config: Any) -> dict[str, Any]:
    return {"name": f"{operation}_appointment", "kind": "calcom", "operation": operation,
            "secret": "clinic_cal", "timeout_s": 1.0,
            "config": {"base_url": url, "event_type_id": EVENT_TYPE_ID, "time_zone": ZONE,
                       "default_email": "desk@clinic.example", **config}}


def registry(url: str, *operations: str, **config: Any) -> ToolRegistry:
    return ToolRegistry([build_vendor_tool(record(url, op, **config), {"clinic_cal": API_KEY}.get, True)
                         for op in operations])


def run(body: Callable[[FakeCalcom], Awaitable[None]], **fake: Any) -> FakeCalcom:
    async def main() -> FakeCalcom:
        async with FakeCalcom(zone=ZONE, **fake) as server:
            await body(server)  # type: ignore[arg-type]
        return server  # type: ignore[return-value]
    return asyncio.run(main())


async def book(tools: ToolRegistry, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return await tools.call("book_appointment", args or ANN, confirmed=True)


def test_a_booking_is_made_in_cal_coms_format_with_the_local_time_as_utc() -> None:
    async def body(cal: FakeCalcom) -> None:
        result = await book(registry(cal.url, "book"), {**ANN, "phone": "+447700900123"})
        assert result["ok"] is True and result["already_booked"] is False, result
        assert result["day"] == "2026-03-05" and result["time"] == "11:00" and result["status"] == "accepted"
        made = cal.created[0]
        assert made["start"] == "2026-03-05T10:00:00.000Z" and made["eventTypeId"] == EVENT_TYPE_ID
        assert made["attendee"] == {"name": "Ann Lee", "email": "desk@clinic.example", "timeZone": ZONE,
                                    "phoneNumber": "+447700900123"}
        assert re.fullmatch(r"[0-9a-f]{64}", made["metadata"]["autospeak_key"])
        assert result["booking_uid"] == next(iter(cal.bookings))
    run(body)


def test_free_slots_are_the_days_open_times_less_the_booked_ones_in_local_time() -> None:
    async def body(cal: FakeCalcom) -> None:
        tools = registry(cal.url, "slots", "book")
        before = await tools.call("slots_appointment", {"day": "2026-03-05"})
        assert before == {"ok": True, "day": "2026-03-05", "times": ["09:00", "11:00", "14:30"],
                          "available": True}
        await book(tools)
        after = await tools.call("slots_appointment", {"day": "2026-03-05"})
        assert after["times"] == ["09:00", "14:30"]
        empty = await tools.call("slots_appointment", {"day": "2026-03-08"})
        assert empty["ok"] is True and empty["times"] == [] and empty["available"] is False
    run(body, open_times={"2026-03-05": ["09:00", "11:00", "14:30"]})


def test_a_retry_after_a_lost_answer_finds_the_booking_instead_of_booking_twice() -> None:
    async def body(cal: FakeCalcom) -> None:
        tools = registry(cal.url, "book")
        cal.fail_next("POST", "/v2/bookings", "lost")  # Cal.com books, the answer never arrives
        first = await book(tools)
        assert first["ok"] is False and first["error"] == "vendor_error", first
        assert len(cal.bookings) == 1
        again = await book(tools)
        assert again["ok"] is True and again["already_booked"] is True, again
        assert again["booking_uid"] == next(iter(cal.bookings))
        repeated = await book(tools)
        assert repeated["already_booked"] is True
        assert len(cal.bookings) == 1 and cal.count("POST", "/v2/bookings") == 1
    run(body)


def test_a_cancelled_booking_does_not_stop_the_same_slot_being_booked_again() -> None:
    async def body(cal: FakeCalcom) -> None:
        tools = registry(cal.url, "book", "cancel")
        first = await book(tools)
        cancel = await tools.call("cancel_appointment", {"booking_uid": first["booking_uid"]}, confirmed=True)
        assert cancel["ok"] is True
        again = await book(tools)
        assert again["ok"] is True and again["already_booked"] is False
        assert again["booking_uid"] != first["booking_uid"] and len(cal.created) == 2
    run(body)


def test_the_key_is_per_call_tool_and_arguments() -> None:
    key = idempotency_key("calcom", "book_appointment", ANN)
    assert key == idempotency_key("calcom", "book_appointment", dict(reversed(ANN.items())))
    assert key != idempotency_key("calcom", "book_appointment", {**ANN, "time": "11:30"})
    assert key != idempotency_key("calcom", "cancel_appointment", ANN)
    token = CALL_SCOPE.set("CA-another-call")
    try:
        assert key != idempotency_key("calcom", "book_appointment", ANN)
    finally:
        CALL_SCOPE.reset(token)


def test_someone_elses_booking_at_that_time_is_refused_with_cal_coms_reason() -> None:
    async def body(cal: FakeCalcom) -> None:
        tools = registry(cal.url, "book")
        await book(tools, {**ANN, "name": "Bob Stone"})
        result = await book(tools)
        assert result["ok"] is False and result["error"] == "vendor_refused" and result["status"] == 400
        assert "already has booking at this time" in result["message"]
        assert len(cal.bookings) == 1
    run(body)


FAILURES = [
    (("POST", "/v2/bookings", "status", 500), "vendor_error"),
    (("POST", "/v2/bookings", "status", 401), "vendor_auth"),
    (("POST", "/v2/bookings", "status", 422), "vendor_refused"),
    (("POST", "/v2/bookings", "hang", 0), "vendor_timeout"),
    (("POST", "/v2/bookings", "garbage", 0), "vendor_bad_answer"),
    (("GET", "/v2/bookings", "status", 503), "vendor_error"),  # the check before the write
    (("GET", "/v2/bookings", "garbage", 0), "vendor_bad_answer"),
]


@pytest.mark.parametrize(("script", "error"), FAILURES)
def test_every_failure_is_a_result_that_says_so_and_books_nothing(script: tuple[Any, ...],
                                                                  error: str) -> None:
    method, path, mode, status = script

    async def body(cal: FakeCalcom) -> None:
        cal.fail_next(method, path, mode, status, message=f"key {API_KEY} is not allowed here")
        result = await book(registry(cal.url, "book"))
        assert result["ok"] is False and result["error"] == error, result
        assert API_KEY not in json.dumps(result)
        assert not [b for b in cal.bookings.values() if b["status"] != "cancelled"]
        if error in ("vendor_refused", "vendor_auth"):
            assert "key [redacted] is not allowed here" in result["message"], result
    run(body)


def test_a_booking_needs_an_email_when_the_record_gives_no_default() -> None:
    async def body(cal: FakeCalcom) -> None:
        result = await book(registry(cal.url, "book", default_email=""))
        assert result["ok"] is False and result["error"] == "missing_argument"
        assert result["missing"] == ["email"]
        assert cal.count("POST", "/v2/bookings") == 0
        given = await book(registry(cal.url, "book", default_email=""), {**ANN, "email": "ann@example.org"})
        assert given["ok"] is True and cal.created[0]["attendee"]["email"] == "ann@example.org"
    run(body)


def test_a_booking_is_moved_once_by_name_and_time_even_when_the_answer_is_lost() -> None:
    async def body(cal: FakeCalcom) -> None:
        tools = registry(cal.url, "book", "reschedule")
        first = await book(tools)
        move = {"name": "Ann Lee", "day": "2026-03-05", "time": "11:00", "new_day": "2026-03-06",
                "new_time": "14:00"}
        cal.fail_next("POST", f"/v2/bookings/{first['booking_uid']}/reschedule", "lost")
        lost = await tools.call("reschedule_appointment", move, confirmed=True)
        assert lost["ok"] is False and lost["error"] == "vendor_error"
        moved = await tools.call("reschedule_appointment", move, confirmed=True)
        assert moved["ok"] is True and moved["already_moved"] is True, moved
        assert (moved["day"], moved["time"]) == ("2026-03-06", "14:00")
        live = [b for b in cal.bookings.values() if b["status"] != "cancelled"]
        assert [b["start"] for b in live] == ["2026-03-06T13:00:00.000Z"]
        assert cal.count("POST", "/v2/bookings/") == 1  # one reschedule request in all
    run(body)


def test_a_booking_is_moved_by_uid_and_a_missing_one_is_not_found() -> None:
    async def body(cal: FakeCalcom) -> None:
        tools = registry(cal.url, "book", "reschedule")
        first = await book(tools)
        moved = await tools.call("reschedule_appointment", {"booking_uid": first["booking_uid"],
                                                            "new_day": "2026-03-05", "new_time": "15:00"},
                                 confirmed=True)
        assert moved["ok"] is True and moved["already_moved"] is False
        assert moved["booking_uid"] != first["booking_uid"]
        nothing = await tools.call("reschedule_appointment", {"name": "Nobody Here", "day": "2026-03-05",
                                                              "time": "09:00", "new_day": "2026-03-06",
                                                              "new_time": "09:00"}, confirmed=True)
        assert nothing["ok"] is False and nothing["error"] == "not_found"
        unnamed = await tools.call("reschedule_appointment", {"new_day": "2026-03-06", "new_time": "09:00"},
                                   confirmed=True)
        assert unnamed["ok"] is False and unnamed["error"] == "missing_argument"
    run(body)


def test_a_cancel_runs_once_and_a_repeat_is_already_done() -> None:
    async def body(cal: FakeCalcom) -> None:
        tools = registry(cal.url, "book", "cancel")
        first = await book(tools)
        args = {"name": "Ann Lee", "day": "2026-03-05", "time": "11:00"}
        done = await tools.call("cancel_appointment", args, confirmed=True)
        assert done["ok"] is True and done["already_cancelled"] is False and done["status"] == "cancelled"
        again = await tools.call("cancel_appointment", args, confirmed=True)
        assert again["ok"] is True and again["already_cancelled"] is True
        assert cal.bookings[first["booking_uid"]]["status"] == "cancelled"
        assert cal.count("POST", f"/v2/bookings/{first['booking_uid']}/cancel") == 1
        missing = await tools.call("cancel_appointment", {**args, "time": "16:00"}, confirmed=True)
        assert missing["ok"] is False and missing["error"] == "not_found"
    run(body)


def test_a_write_is_always_confirmed_first_whatever_the_record_says() -> None:
    async def body(cal: FakeCalcom) -> None:
        tools = registry(cal.url, "book", "slots")
        assert tools.is_mutating("book_appointment") and not tools.is_mutating("slots_appointment")
        refused = await tools.call("book_appointment", ANN)
        assert refused["error"] == "confirmation_required" and cal.seen == []
        bad = await tools.call("book_appointment", {**ANN, "day": "next Thursday"}, confirmed=True)
        assert bad["error"] == "invalid_argument" and cal.seen == []
    run(body)


@pytest.mark.parametrize(("change", "message"), [
    ({"secret": "nobody"}, "credential 'nobody'"),
    ({"operation": "delete_everything"}, "no operation 'delete_everything'"),
    ({"config": {"time_zone": ZONE}}, "config.event_type_id"),
    ({"config": {"event_type_id": 1, "time_zone": "Mars/Olympus"}}, "unknown time zone"),
])
def test_a_record_that_cannot_run_is_refused_when_the_agent_is_built(change: dict[str, Any],
                                                                     message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_vendor_tool({**record("http://127.0.0.1:9"), **change}, {"clinic_cal": API_KEY}.get, True)


def test_the_credential_is_never_in_the_tools_description_or_repr() -> None:
    tool = build_vendor_tool(record("http://127.0.0.1:9"), {"clinic_cal": API_KEY}.get, True)
    assert API_KEY not in repr(tool) and API_KEY not in json.dumps(tool.openai_schema())
    assert API_KEY not in repr(tool.http)


def test_a_private_address_and_a_uid_that_would_change_the_path_never_reach_the_network() -> None:
    async def body(cal: FakeCalcom) -> None:
        tool = build_vendor_tool(record(cal.url, "book"), {"clinic_cal": API_KEY}.get, allow_private=False)
        guarded = ToolRegistry([tool])
        refused = await book(guarded)
        assert refused["ok"] is False and refused["error"] == "tool_address_refused"
        tools = registry(cal.url, "cancel")
        sneaky = await tools.call("cancel_appointment", {"booking_uid": "../event-types/1"}, confirmed=True)
        assert sneaky["ok"] is False and sneaky["error"] == "invalid_argument"
        assert cal.seen == []
    run(body)
