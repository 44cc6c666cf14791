"""The `mews` tool kind against a local server speaking the Mews Connector API: tokens in every body,
nights and stays in the hotel's time as UTC, a reservation made once however often it is retried,
and every failure `ok: false` with neither token in it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from vendor_fakes.mews_fake import (
    ACCESS_TOKEN,
    ADULT,
    CLIENT_TOKEN,
    DOUBLE,
    RATE_ID,
    SERVICE_ID,
    SUITE,
    FakeMews,
)

from cells.tools.base import ToolRegistry
from cells.tools.vendors import build_vendor_tool

SECRETS = {"hotel_access": ACCESS_TOKEN, "mews_client": CLIENT_TOKEN}
STAY = {"arrival": "2026-03-05", "departure": "2026-03-08", "guests": 2, "room_type": "double",
        "name": "Ann Lee", "notes": "late arrival"}


def record(url: str, operation: str, **config: Any) -> dict[str, Any]:
    return {"name": f"room_{operation}", "kind": "mews", "operation": operation, "secret": "hotel_access",
            "timeout_s": 1.0,
            "config": {"base_url": url, "client_token_secret": "mews_client", "service_id": SERVICE_ID,
                       "rate_id": RATE_ID, "adult_age_category_id": ADULT, "time_zone": "Europe/Prague",
                       "room_types": {"double": DOUBLE, "suite": SUITE}, **config}}


def tools(url: str, secrets: dict[str, str] = SECRETS) -> ToolRegistry:
    return ToolRegistry([build_vendor_tool(record(url, op), secrets.get, True)
                         for op in ("availability", "reserve")])


def run(body: Callable[[FakeMews], Awaitable[None]], **fake: Any) -> None:
    async def main() -> None:
        async with FakeMews(**fake) as server:
            await body(server)  # type: ignore[arg-type]
    asyncio.run(main())


async def reserve(registry: ToolRegistry, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return await registry.call("room_reserve", args or STAY, confirmed=True)


def test_availability_is_the_fewest_free_rooms_over_the_nights_in_the_hotels_time() -> None:
    async def body(mews: FakeMews) -> None:
        guest = mews.customer("Bob", "Stone")
        mews.reservations["r0"] = {"Id": "r0", "ServiceId": SERVICE_ID, "AccountId": guest["Id"],
                                   "State": "Confirmed", "RequestedResourceCategoryId": SUITE,
                                   "ScheduledStartUtc": "2026-03-06T14:00:00Z",
                                   "ScheduledEndUtc": "2026-03-07T10:00:00Z"}
        result = await tools(mews.url).call("room_availability", {"arrival": "2026-03-05",
                                                                  "departure": "2026-03-08"})
        assert result == {"ok": True, "arrival": "2026-03-05", "departure": "2026-03-08",
                          "rooms": {"double": 2, "suite": 0}, "available": True}
        sent = mews.bodies[-1]
        assert sent["FirstTimeUnitStartUtc"] == "2026-03-04T23:00:00Z"  # Prague midnight, UTC+1
        assert sent["LastTimeUnitStartUtc"] == "2026-03-06T23:00:00Z"
        assert sent["Client"] == "AutoSpeak 1.0" and sent["ServiceId"] == SERVICE_ID
    run(body)


def test_a_reservation_is_added_with_the_stay_as_utc_and_the_guest_as_a_customer() -> None:
    async def body(mews: FakeMews) -> None:
        result = await reserve(tools(mews.url))
        assert result["ok"] is True and result["already_reserved"] is False, result
        (item,) = mews.added
        assert (item["StartUtc"], item["EndUtc"]) == ("2026-03-05T14:00:00Z", "2026-03-08T10:00:00Z")
        assert item["RequestedCategoryId"] == DOUBLE and item["RateId"] == RATE_ID
        assert item["PersonCounts"] == [{"AgeCategoryId": ADULT, "Count": 2}]
        assert item["Notes"] == "late arrival"
        (customer,) = mews.customers.values()
        assert (customer["FirstName"], customer["LastName"]) == ("Ann", "Lee")
        assert item["CustomerId"] == customer["Id"]
        assert result["reservation_id"] in mews.reservations and result["number"] == "101"
        assert all(b["ClientToken"] == CLIENT_TOKEN and b["AccessToken"] == ACCESS_TOKEN for b in mews.bodies)
    run(body)


def test_a_retry_after_a_lost_answer_finds_the_reservation_instead_of_adding_another() -> None:
    async def body(mews: FakeMews) -> None:
        registry = tools(mews.url)
        mews.fail_next("POST", "/api/connector/v1/reservations/add", "lost")
        lost = await reserve(registry)
        assert lost["ok"] is False and lost["error"] == "vendor_error"
        again = await reserve(registry)
        assert again["ok"] is True and again["already_reserved"] is True, again
        assert again["reservation_id"] == next(iter(mews.reservations))
        assert (await reserve(registry))["already_reserved"] is True
        assert len(mews.added) == 1 and len(mews.reservations) == 1
        # another guest for the same room and nights is a different reservation
        for n, other_guest in enumerate(("Bob Lee", "Ann Stone"), start=2):
            other = await reserve(registry, {**STAY, "name": other_guest})
            assert other["ok"] is True and other["already_reserved"] is False and len(mews.added) == n
    run(body, rooms={DOUBLE: 3, SUITE: 1})


def test_a_guest_with_an_email_is_found_not_added_again() -> None:
    async def body(mews: FakeMews) -> None:
        known = mews.customer("Ann", "Lee", "ann@example.org")
        result = await reserve(tools(mews.url), {**STAY, "email": "ann@example.org"})
        assert result["ok"] is True and mews.added[0]["CustomerId"] == known["Id"]
        assert len(mews.customers) == 1
    run(body)


def test_no_room_left_is_mews_refusal_in_its_own_words() -> None:
    async def body(mews: FakeMews) -> None:
        registry = tools(mews.url)
        assert (await reserve(registry, {**STAY, "room_type": "suite"}))["ok"] is True
        full = await reserve(registry, {**STAY, "room_type": "suite", "name": "Bob Stone"})
        assert full["ok"] is False and full["error"] == "vendor_refused" and full["status"] == 400
        assert "no availability for the requested category" in full["message"]
    run(body)


@pytest.mark.parametrize(("path", "mode", "status", "error"), [
    ("/api/connector/v1/reservations/add", "status", 500, "vendor_error"),
    ("/api/connector/v1/reservations/add", "hang", 0, "vendor_timeout"),
    ("/api/connector/v1/reservations/getAll", "garbage", 0, "vendor_bad_answer"),
    ("/api/connector/v1/customers/add", "status", 400, "vendor_refused"),
])
def test_every_failure_is_a_result_that_says_so_and_reserves_nothing(path: str, mode: str, status: int,
                                                                     error: str) -> None:
    async def body(mews: FakeMews) -> None:
        mews.fail_next("POST", path, mode, status, message=f"Invalid token {ACCESS_TOKEN} for {CLIENT_TOKEN}")
        result = await reserve(tools(mews.url))
        assert result["ok"] is False and result["error"] == error, result
        text = json.dumps(result)
        assert ACCESS_TOKEN not in text and CLIENT_TOKEN not in text
        assert mews.reservations == {}
        if error == "vendor_refused":
            assert "Invalid token [redacted] for [redacted]" in result["message"]
    run(body)


def test_a_wrong_token_is_an_auth_failure_and_bad_stays_never_reach_mews() -> None:
    async def body(mews: FakeMews) -> None:
        wrong = await reserve(tools(mews.url, {**SECRETS, "hotel_access": "revoked"}))
        assert wrong["ok"] is False and wrong["error"] == "vendor_auth" and "revoked" not in json.dumps(wrong)
        seen = len(mews.seen)
        registry = tools(mews.url)
        backwards = await reserve(registry, {**STAY, "departure": "2026-03-04"})
        assert backwards["error"] == "invalid_argument" and backwards["fields"] == ["departure"]
        penthouse = await reserve(registry, {**STAY, "room_type": "penthouse"})
        assert penthouse["error"] == "invalid_argument"
        crowd = await reserve(registry, {**STAY, "guests": 40})
        assert crowd["error"] == "invalid_argument"
        assert len(mews.seen) == seen and mews.reservations == {}
    run(body)


@pytest.mark.parametrize(("config", "message"), [
    ({"client_token_secret": "nobody"}, "credential 'nobody'"), ({"rate_id": ""}, "config.rate_id"),
    ({"room_types": ["double"]}, "config.room_types maps"),
    ({"time_zone": "Nowhere/Town"}, "unknown time zone")])
def test_a_record_that_cannot_run_is_refused_when_built(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_vendor_tool(record("http://127.0.0.1:9", "reserve", **config), SECRETS.get, True)
