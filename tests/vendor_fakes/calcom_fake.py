"""A local stand-in for Cal.com API v2 (bookings and slots), speaking its wire format: bearer API key,
the `cal-api-version` header each endpoint documents, `{"status": "success", "data": ...}` answers
and `{"status": "error", "error": {"code", "message"}}` errors. Bookings live in memory."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from .scripted import ScriptedFake

API_KEY = "cal_test_0123456789abcdef"
EVENT_TYPE_ID = 4242
DURATION = timedelta(minutes=30)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeCalcom(ScriptedFake):
    def __init__(self, open_times: dict[str, list[str]] | None = None, zone: str = "Europe/London") -> None:
        super().__init__()
        self.bookings: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # the body of every booking made
        self.open_times = open_times or {}  # local day -> ["09:00", ...]
        self.zone = ZoneInfo(zone)
        self._ids = itertools.count(1)

    def error_body(self, status: int, message: str) -> Any:
        return {"status": "error", "timestamp": "2026-03-02T09:00:00.000Z", "path": "/v2",
                "error": {"code": "BadRequestException" if status < 500 else "InternalServerErrorException",
                          "message": message}}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/slots", self.slots)
        app.router.add_get("/v2/bookings", self.list_bookings)
        app.router.add_post("/v2/bookings", self.create)
        app.router.add_get("/v2/bookings/{uid}", self.get_booking)
        app.router.add_post("/v2/bookings/{uid}/reschedule", self.reschedule)
        app.router.add_post("/v2/bookings/{uid}/cancel", self.cancel)

    def _refuse(self, request: web.Request, version: str) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response(self.error_body(401, "Invalid API Key"), status=401)
        if request.headers.get("cal-api-version") != version:
            return web.json_response(self.error_body(400, "wrong cal-api-version"), status=400)
        return None

    def _ok(self, data: Any, status: int = 200) -> web.Response:
        return web.json_response({"status": "success", "data": data}, status=status)

    def _bad(self, message: str, status: int = 400) -> web.Response:
        return web.json_response(self.error_body(status, message), status=status)

    def _new(self, start: datetime, attendee: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
        n = next(self._ids)
        booking = {"id": n, "uid": f"bk{n:04d}", "title": "Appointment", "status": "accepted",
                   "start": _iso(start), "end": _iso(start + DURATION), "duration": 30,
                   "eventTypeId": EVENT_TYPE_ID, "attendees": [attendee], "metadata": metadata}
        self.bookings[booking["uid"]] = booking
        return booking

    def live_at(self, start: datetime) -> list[dict[str, Any]]:
        return [b for b in self.bookings.values() if _at(b["start"]) == start and b["status"] != "cancelled"]

    async def slots(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, "2024-09-04")) is not None:
            return refused
        q = request.query
        if q.get("eventTypeId") != str(EVENT_TYPE_ID):
            return self._bad("event type not found", 404)
        zone = ZoneInfo(q.get("timeZone", "UTC"))
        day = q["start"]
        free = []
        for hhmm in self.open_times.get(day, []):
            start = datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=self.zone)
            if not self.live_at(start.astimezone(UTC)):
                free.append({"start": start.astimezone(zone).isoformat(timespec="milliseconds")})
        return self._ok({day: free} if free else {})

    async def list_bookings(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, "2024-08-13")) is not None:
            return refused
        q = request.query
        found = list(self.bookings.values())
        if "eventTypeId" in q:
            found = [b for b in found if str(b["eventTypeId"]) == q["eventTypeId"]]
        if "attendeeName" in q:
            name = q["attendeeName"].casefold()
            found = [b for b in found if any(name in a["name"].casefold() for a in b["attendees"])]
        if "afterStart" in q:
            found = [b for b in found if _at(b["start"]) >= _at(q["afterStart"])]
        if "beforeEnd" in q:
            found = [b for b in found if _at(b["end"]) <= _at(q["beforeEnd"])]
        return web.json_response({"status": "success", "data": found,
                                  "pagination": {"totalItems": len(found), "hasNextPage": False}})

    async def get_booking(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, "2024-08-13")) is not None:
            return refused
        booking = self.bookings.get(request.match_info["uid"])
        return self._ok(booking) if booking else self._bad("Booking not found", 404)

    async def create(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, "2024-08-13")) is not None:
            return refused
        body = await request.json()
        attendee = body.get("attendee") or {}
        if body.get("eventTypeId") != EVENT_TYPE_ID:
            return self._bad("Event type not found", 404)
        if not all(attendee.get(k) for k in ("name", "email", "timeZone")):
            return self._bad("attendee needs name, email and timeZone")
        start = _at(body["start"])
        if not body["start"].endswith("Z") or self.live_at(start):
            return self._bad("User either already has booking at this time or is not available")
        self.created.append(body)
        return self._ok(self._new(start, attendee, body.get("metadata") or {}), 201)

    async def reschedule(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, "2024-08-13")) is not None:
            return refused
        old = self.bookings.get(request.match_info["uid"])
        if old is None:
            return self._bad("Booking not found", 404)
        if old["status"] == "cancelled":
            return self._bad(f"Booking {old['uid']} is cancelled and cannot be rescheduled")
        start = _at((await request.json())["start"])
        if self.live_at(start):
            return self._bad("User either already has booking at this time or is not available")
        new = self._new(start, old["attendees"][0], old["metadata"])
        old.update(status="cancelled", rescheduledToUid=new["uid"])
        self.created.append({"rescheduled_from": old["uid"], "start": new["start"]})
        return self._ok(new, 201)

    async def cancel(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, "2024-08-13")) is not None:
            return refused
        booking = self.bookings.get(request.match_info["uid"])
        if booking is None:
            return self._bad("Booking not found", 404)
        if booking["status"] == "cancelled":
            return self._bad("This booking has already been cancelled.")
        booking["status"] = "cancelled"
        booking["cancellationReason"] = (await request.json()).get("cancellationReason")
        return self._ok(booking)
