"""A local stand-in for the Mews Connector API (availability, customers, reservations), speaking its
wire format: every operation a JSON POST under /api/connector/v1 whose body carries ClientToken,
AccessToken and Client; `{"Message": ...}` errors. One nightly service in a hotel on Prague time,
rooms per category, reservations in memory."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from .scripted import ScriptedFake

CLIENT_TOKEN = "E0D439EE522F44368DC78E1BFB03710C-D24FB11DBE31D4621C4817E028D9E1D"
ACCESS_TOKEN = "C66EF7B239D24632943D115EDE9CB810-EA00F8FD8294692C940F6B5A8F9453D"
SERVICE_ID = "bd26d8db-86da-4f96-9efc-e5a4654a4a94"
RATE_ID = "ed4b660b-19d0-434b-9360-a4de2ea42eda"
ADULT = "ab58c939-be30-4a60-8f75-ae1600c60c9f"
DOUBLE = "44bd8ad0-e70b-4bd9-8445-ad7200d7c349"
SUITE = "773d5e42-de1e-43a0-9ce6-f940faf2303f"
ZONE = ZoneInfo("Europe/Prague")
API = "/api/connector/v1/"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _night_of(at: datetime) -> date:
    return at.astimezone(ZONE).date()


class FakeMews(ScriptedFake):
    def __init__(self, rooms: dict[str, int] | None = None) -> None:
        super().__init__()
        self.rooms = rooms or {DOUBLE: 2, SUITE: 1}
        self.customers: dict[str, dict[str, Any]] = {}
        self.reservations: dict[str, dict[str, Any]] = {}
        self.added: list[dict[str, Any]] = []  # every reservation body added
        self.bodies: list[dict[str, Any]] = []  # every request body, for the token checks
        self._numbers = itertools.count(101)

    def error_body(self, status: int, message: str) -> Any:
        return {"Message": message, "RequestId": "req-1", "Details": None}

    def add_routes(self, app: web.Application) -> None:
        handlers = {"services/getAvailability": self.availability, "customers/getAll": self.get_customers,
                    "customers/add": self.add_customer, "reservations/add": self.add_reservations,
                    "reservations/getAll/2023-06-06": self.get_reservations}
        for name, handler in handlers.items():
            app.router.add_post(API + name, self._authorised(handler))

    def _authorised(self, handler: Any) -> Any:
        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            self.bodies.append(body)
            if body.get("ClientToken") != CLIENT_TOKEN or body.get("AccessToken") != ACCESS_TOKEN:
                return web.json_response({"Message": "Invalid ClientToken or AccessToken."}, status=401)
            if not body.get("Client"):
                return web.json_response({"Message": "Client is required."}, status=400)
            return await handler(body)
        return handle

    def booked(self, category: str, night: date) -> int:
        return sum(1 for r in self.reservations.values() if r["RequestedResourceCategoryId"] == category
                   and r["State"] != "Canceled"
                   and _night_of(_at(r["ScheduledStartUtc"])) <= night < _night_of(_at(r["ScheduledEndUtc"])))

    async def availability(self, body: dict[str, Any]) -> web.Response:
        if body.get("ServiceId") != SERVICE_ID:
            return web.json_response({"Message": "Service not found."}, status=400)
        first, last = _at(body["FirstTimeUnitStartUtc"]), _at(body["LastTimeUnitStartUtc"])
        count = (_night_of(last) - _night_of(first)).days + 1
        nights = [_night_of(first) + timedelta(days=n) for n in range(count)]
        units = [_iso(datetime.combine(n, datetime.min.time(), tzinfo=ZONE)) for n in nights]
        categories = [{"CategoryId": c, "Availabilities": [total - self.booked(c, n) for n in nights],
                       "Adjustments": [0 for _ in nights]} for c, total in self.rooms.items()]
        return web.json_response({"TimeUnitStartsUtc": units, "CategoryAvailabilities": categories})

    async def get_customers(self, body: dict[str, Any]) -> web.Response:
        found = list(self.customers.values())
        if "CustomerIds" in body:
            found = [c for c in found if c["Id"] in body["CustomerIds"]]
        if "Emails" in body:
            found = [c for c in found if c.get("Email") in body["Emails"]]
        return web.json_response({"Customers": found, "Cursor": None})

    def customer(self, first: str, last: str, email: str | None = None) -> dict[str, Any]:
        customer = {"Id": str(uuid.uuid4()), "FirstName": first, "LastName": last, "Email": email}
        self.customers[customer["Id"]] = customer
        return customer

    async def add_customer(self, body: dict[str, Any]) -> web.Response:
        if not body.get("LastName"):
            return web.json_response({"Message": "LastName is required."}, status=400)
        added = self.customer(body.get("FirstName") or "", body["LastName"], body.get("Email"))
        return web.json_response(added)

    async def get_reservations(self, body: dict[str, Any]) -> web.Response:
        found = [r for r in self.reservations.values()
                 if r["ServiceId"] in body.get("ServiceIds", [r["ServiceId"]])
                 and r["State"] in body.get("States", [r["State"]])]
        if "CollidingUtc" in body:
            lo, hi = _at(body["CollidingUtc"]["StartUtc"]), _at(body["CollidingUtc"]["EndUtc"])
            found = [r for r in found
                     if _at(r["ScheduledStartUtc"]) < hi and _at(r["ScheduledEndUtc"]) > lo]
        return web.json_response({"Reservations": found, "Cursor": None})

    async def add_reservations(self, body: dict[str, Any]) -> web.Response:
        out = []
        for item in body.get("Reservations") or []:
            start, end = _at(item["StartUtc"]), _at(item["EndUtc"])
            category = item.get("RequestedCategoryId")
            known = item.get("CustomerId") in self.customers and item.get("RateId") == RATE_ID
            if category not in self.rooms or not known:
                return web.json_response({"Message": "Invalid RequestedCategoryId, RateId or CustomerId."},
                                         status=400)
            count = (_night_of(end) - _night_of(start)).days
            nights = [_night_of(start) + timedelta(days=n) for n in range(count)]
            if any(self.booked(category, n) >= self.rooms[category] for n in nights):
                return web.json_response({"Message": "There is no availability for the requested category."},
                                         status=400)
            self.added.append(item)
            reservation = {"Id": str(uuid.uuid4()), "Number": str(next(self._numbers)),
                           "ServiceId": body["ServiceId"],
                           "AccountId": item["CustomerId"], "State": item.get("State", "Confirmed"),
                           "ScheduledStartUtc": item["StartUtc"], "ScheduledEndUtc": item["EndUtc"],
                           "RequestedResourceCategoryId": category, "PersonCounts": item.get("PersonCounts"),
                           "Notes": item.get("Notes")}
            self.reservations[reservation["Id"]] = reservation
            out.append({"Identifier": item.get("Identifier"), "Reservation": reservation})
        return web.json_response({"Reservations": out})
