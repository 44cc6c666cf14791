"""The `calcom` tool kind: Cal.com API v2 bookings (free slots, book, move, cancel) for Reception.

Auth is the tenant's Cal.com API key as a bearer token (`secret` names it); every request carries the
`cal-api-version` header its endpoint documents. Answers come as `{"status": "success", "data": ...}`
and errors as `{"status": "error", "error": {"code", "message"}}`. Days and times in arguments are
the business's local ones (`config.time_zone`); Cal.com takes and gives UTC instants.

Cal.com has no idempotency header for bookings, so each write asks first: `book` lists the attendee's
bookings of the event type at that start and returns a live one it finds instead of booking again (the
call's idempotency key goes into the booking's metadata, tracing it to the call); `reschedule` finds
the booking already at the new time; `cancel` of a cancelled booking is done already.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cells.tools.base import ToolError
from cells.tools.vendors.base import (
    OperationSpec,
    VendorHttp,
    VendorTool,
    bad_answer,
    common,
    http_for,
    require,
    secret_for,
)

BASE_URL = "https://api.cal.com"
BOOKINGS_VERSION = "2024-08-13"
SLOTS_VERSION = "2024-09-04"
VENDOR = "Cal.com"
KEY_FIELD = "autospeak_key"  # our idempotency key, kept in the booking's metadata
LIVE = ("accepted", "pending")
_DAY = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_TIME = {"type": "string", "pattern": r"^\d{2}:\d{2}$"}
_NAME = {"type": "string", "minLength": 2, "maxLength": 200}


def _error_message(body: Any) -> str:
    error = body.get("error") or {}
    return str(error.get("message") or body.get("message") or "")


def _data(body: Any, kind: type) -> Any:
    ok = isinstance(body, dict) and body.get("status") == "success"
    if not ok or not isinstance(body.get("data"), kind):
        raise bad_answer(VENDOR, "the data it should hold")
    return body["data"]


def _instant(text: Any) -> datetime:
    try:
        at = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise bad_answer(VENDOR, "a readable time") from None
    if at.tzinfo is None:
        raise bad_answer(VENDOR, "a time with its zone")
    return at.astimezone(UTC)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class CalcomTool(VendorTool):
    kind = "calcom"

    def __init__(self, name: str, operation: str, http: VendorHttp, *, event_type_id: int, zone: ZoneInfo,
                 default_email: str = "", description: str = "", mutating: bool = False) -> None:
        super().__init__(name, operation, http, description=description, mutating=mutating)
        self.event_type_id = event_type_id
        self.zone = zone
        self.default_email = default_email  # the attendee email when the caller gives none

    @classmethod
    def from_record(cls, tool: Mapping[str, Any], secrets: Any, allow_private: bool) -> CalcomTool:
        name = str(tool.get("name") or "")
        config = tool.get("config") or {}
        key = secret_for(str(tool.get("secret") or ""), name, secrets)
        zone_name = str(require(config, "time_zone", name, cls.kind))
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"tool {name!r} (calcom): unknown time zone {zone_name!r}") from None
        http = http_for(tool, VENDOR, BASE_URL, _error_message, allow_private, secrets=(key,),
                        headers={"Authorization": f"Bearer {key}"})
        return cls(name, str(tool.get("operation") or "book"), http,
                   event_type_id=int(require(config, "event_type_id", name, cls.kind)), zone=zone,
                   default_email=str(config.get("default_email") or ""), **common(tool))

    # -- helpers ---------------------------------------------------------------------------------
    def start_of(self, day: str, at: str) -> datetime:
        try:
            local = datetime.combine(date.fromisoformat(day), time.fromisoformat(at), tzinfo=self.zone)
        except ValueError:
            raise ToolError("invalid_argument", f"{self.name}: {day} {at} is not a date and time") from None
        return local.astimezone(UTC)

    def local(self, at: datetime) -> dict[str, str]:
        here = at.astimezone(self.zone)
        return {"day": here.date().isoformat(), "time": here.strftime("%H:%M")}

    async def bookings_at(self, name: str, start: datetime) -> list[dict[str, Any]]:
        """The attendee's bookings of this event type that start at `start` (any status)."""
        params = {"eventTypeId": str(self.event_type_id), "attendeeName": name,
                  "afterStart": _utc(start - timedelta(minutes=1)),
                  "beforeEnd": _utc(start + timedelta(days=1))}
        found = _data(await self.http.request("GET", "/v2/bookings", params=params,
                                              headers={"cal-api-version": BOOKINGS_VERSION}), list)
        wanted = name.casefold()
        return [b for b in found if isinstance(b, dict) and _instant(b.get("start")) == start
                and any(str(a.get("name", "")).casefold() == wanted for a in b.get("attendees") or [])]

    def result(self, booking: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        if not booking.get("uid"):
            raise bad_answer(VENDOR, "a booking uid")
        return {"booking_uid": str(booking["uid"]), "status": str(booking.get("status") or ""),
                **self.local(_instant(booking.get("start"))), **extra}

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = await self.http.request("POST", path, json_body=dict(body),
                                         headers={"cal-api-version": BOOKINGS_VERSION})
        return _data(answer, dict)


# -- operations --------------------------------------------------------------------------------------

async def _slots(tool: CalcomTool, args: Mapping[str, Any], key: str) -> dict[str, Any]:
    day = str(args["day"])
    params = {"eventTypeId": str(tool.event_type_id), "start": day, "end": day, "timeZone": tool.zone.key}
    data = _data(await tool.http.request("GET", "/v2/slots", params=params,
                                         headers={"cal-api-version": SLOTS_VERSION}), dict)
    slots = data.get(day, [])
    if not isinstance(slots, list):
        raise bad_answer(VENDOR, "a list of slots")
    starts = [_instant(s.get("start") if isinstance(s, dict) else s) for s in slots]
    times = sorted({tool.local(at)["time"] for at in starts})
    return {"day": day, "times": times, "available": bool(times)}


async def _book(tool: CalcomTool, args: Mapping[str, Any], key: str) -> dict[str, Any]:
    start = tool.start_of(args["day"], args["time"])
    name = str(args["name"])
    for booking in await tool.bookings_at(name, start):
        # This call's booking, or the same name at the same time: booked already, unless it was
        # cancelled or declined since (then booking again is what the caller asks for).
        if booking.get("status") in LIVE:
            return tool.result(booking, already_booked=True)
    email = str(args.get("email") or tool.default_email)
    if not email:  # Cal.com's booking form requires one; a caller on the phone rarely gives it
        raise ToolError("missing_argument", f"{tool.name} needs the caller's email", missing=["email"])
    attendee: dict[str, Any] = {"name": name, "timeZone": tool.zone.key, "email": email}
    if args.get("phone"):
        attendee["phoneNumber"] = str(args["phone"])
    body = {"start": _utc(start), "eventTypeId": tool.event_type_id, "attendee": attendee,
            "metadata": {KEY_FIELD: key}}
    return tool.result(await tool.post("/v2/bookings", body), already_booked=False)


async def _booking_to_change(tool: CalcomTool, args: Mapping[str, Any]) -> dict[str, Any] | None:
    if args.get("booking_uid"):
        uid = str(args["booking_uid"])
        return _data(await tool.http.request("GET", f"/v2/bookings/{uid}",
                                             headers={"cal-api-version": BOOKINGS_VERSION}), dict)
    if not all(args.get(k) for k in ("name", "day", "time")):
        raise ToolError("missing_argument", f"{tool.name} needs booking_uid, or name, day and time")
    matches = await tool.bookings_at(str(args["name"]), tool.start_of(args["day"], args["time"]))
    return next((b for b in matches if b.get("status") != "cancelled"), matches[0] if matches else None)


async def _reschedule(tool: CalcomTool, args: Mapping[str, Any], key: str) -> dict[str, Any]:
    new_start = tool.start_of(args["new_day"], args["new_time"])
    booking = await _booking_to_change(tool, args)
    if booking is None or booking.get("status") == "cancelled":
        # Moved already (a retry after Cal.com moved it but its answer was lost): the attendee's live
        # booking at the new time is the result.
        name = str(args.get("name") or _attendee(booking))
        there = await tool.bookings_at(name, new_start) if name else []
        moved = [b for b in there if b.get("status") != "cancelled"]
        if moved:
            return tool.result(moved[0], already_moved=True)
        raise ToolError("not_found", f"{tool.name}: no booking to move was found")
    if _instant(booking.get("start")) == new_start:
        return tool.result(booking, already_moved=True)
    body = {"start": _utc(new_start), "reschedulingReason": str(args.get("reason") or "Moved by phone")}
    moved_to = await tool.post(f"/v2/bookings/{booking.get('uid')}/reschedule", body)
    return tool.result(moved_to, already_moved=False)


def _attendee(booking: Mapping[str, Any] | None) -> str:
    attendees = (booking or {}).get("attendees") or [{}]
    return str(attendees[0].get("name") or "")


async def _cancel(tool: CalcomTool, args: Mapping[str, Any], key: str) -> dict[str, Any]:
    booking = await _booking_to_change(tool, args)
    if booking is None:
        raise ToolError("not_found", f"{tool.name}: no booking to cancel was found")
    if booking.get("status") == "cancelled":
        return tool.result(booking, already_cancelled=True)
    body = {"cancellationReason": str(args.get("reason") or "Cancelled by phone")}
    cancelled = await tool.post(f"/v2/bookings/{booking.get('uid')}/cancel", body)
    return tool.result(cancelled, already_cancelled=False)


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


# A uid goes into the request path: letters, digits, - and _ only.
_FIND = {"booking_uid": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}, "name": _NAME, "day": _DAY,
         "time": _TIME}
CalcomTool.OPERATIONS = {
    "slots": OperationSpec(_slots, _schema({"day": _DAY}, ["day"]), False,
                           "The free appointment times on a day."),
    "book": OperationSpec(_book, _schema({"day": _DAY, "time": _TIME, "name": _NAME,
                                          "email": {"type": "string", "format": "email"},
                                          "phone": {"type": "string", "maxLength": 32}},
                                         ["day", "time", "name"]), True, "Book an appointment."),
    "reschedule": OperationSpec(_reschedule, _schema({**_FIND, "new_day": _DAY, "new_time": _TIME,
                                                      "reason": {"type": "string", "maxLength": 500}},
                                                     ["new_day", "new_time"]), True, "Move an appointment."),
    "cancel": OperationSpec(_cancel, _schema({**_FIND, "reason": {"type": "string", "maxLength": 500}}, []),
                            True, "Cancel an appointment."),
}
