"""The `mews` tool kind: room availability and reservations through the Mews Connector API, for Stay.

Every Connector API operation is a JSON POST carrying `ClientToken` (the integration's, named by
`config.client_token_secret`), `AccessToken` (the property's, named by `secret`) and `Client` (our name
and version) in its body; errors come as `{"Message": ...}`. Dates in arguments are the hotel's local
ones (`config.time_zone`); a stay runs from arrival at `check_in` to departure at `check_out`.

Mews takes no idempotency key for `reservations/add`, so `reserve` asks first: the service's
reservations colliding with the stay, the same category and start and end, for a customer of the
same name, is the reservation already made. A guest given with an email is found before being added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

BASE_URL = "https://api.mews.com"
API = "/api/connector/v1"
VENDOR = "Mews"
CLIENT = "AutoSpeak 1.0"
LIVE_STATES = ["Confirmed", "Optional", "Inquired", "Requested"]
_DAY = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}


def _error_message(body: Any) -> str:
    return str(body.get("Message") or "")


def _instant(text: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise bad_answer(VENDOR, "a readable time") from None


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MewsTool(VendorTool):
    kind = "mews"

    def __init__(self, name: str, operation: str, http: VendorHttp, *, tokens: Mapping[str, str],
                 config: Mapping[str, Any], zone: ZoneInfo, description: str = "",
                 mutating: bool = False) -> None:
        super().__init__(name, operation, http, description=description, mutating=mutating)
        self._tokens = dict(tokens)
        self.zone = zone
        self.service_id = str(config["service_id"])
        self.rate_id = str(config.get("rate_id") or "")
        self.adult_age_category_id = str(config.get("adult_age_category_id") or "")
        self.room_types: dict[str, str] = {str(k): str(v) for k, v in config["room_types"].items()}
        self.check_in = time.fromisoformat(str(config.get("check_in") or "15:00"))
        self.check_out = time.fromisoformat(str(config.get("check_out") or "11:00"))
        if self.operation == "reserve" and not (self.rate_id and self.adult_age_category_id):
            raise ValueError(f"tool {name!r} (mews): reserve needs config.rate_id and "
                             "config.adult_age_category_id")
        self.parameters = _with_room_types(self.parameters, sorted(self.room_types))

    @classmethod
    def from_record(cls, tool: Mapping[str, Any], secrets: Callable[[str], str | None],
                    allow_private: bool) -> MewsTool:
        name = str(tool.get("name") or "")
        config = tool.get("config") or {}
        access = secret_for(str(tool.get("secret") or ""), name, secrets)
        client = secret_for(str(config.get("client_token_secret") or ""), name, secrets)
        for key in ("service_id", "room_types", "time_zone"):
            require(config, key, name, cls.kind)
        if not isinstance(config["room_types"], Mapping):
            raise ValueError(f"tool {name!r} (mews): config.room_types maps a room type to its category id")
        try:
            zone = ZoneInfo(str(config["time_zone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"tool {name!r} (mews): unknown time zone {config['time_zone']!r}") from None
        http = http_for(tool, VENDOR, BASE_URL, _error_message, allow_private, secrets=(access, client))
        tokens = {"ClientToken": client, "AccessToken": access, "Client": str(config.get("client") or CLIENT)}
        return cls(name, str(tool.get("operation") or "reserve"), http, tokens=tokens, config=config,
                   zone=zone, **common(tool))

    async def post(self, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = await self.http.request("POST", f"{API}/{operation}", json_body={**self._tokens, **body})
        if not isinstance(answer, dict):
            raise bad_answer(VENDOR, "a JSON object")
        return answer

    def stay(self, args: Mapping[str, Any]) -> tuple[date, date]:
        try:
            arrival, departure = date.fromisoformat(args["arrival"]), date.fromisoformat(args["departure"])
        except ValueError:
            raise ToolError("invalid_argument", f"{self.name}: arrival and departure are dates") from None
        if departure <= arrival:
            raise ToolError("invalid_argument", f"{self.name}: departure must be after arrival",
                            fields=["departure"])
        return arrival, departure

    def at(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock, tzinfo=self.zone).astimezone(UTC)

    def category(self, room_type: str) -> str:
        if room_type not in self.room_types:
            raise ToolError("invalid_argument", f"{self.name}: no room type {room_type!r}",
                            fields=["room_type"])
        return self.room_types[room_type]


def _with_room_types(schema: dict[str, Any], names: list[str]) -> dict[str, Any]:
    properties = {**schema["properties"], "room_type": {"type": "string", "enum": names}}
    return {**schema, "properties": properties}


async def _availability(tool: MewsTool, args: Mapping[str, Any], key: str) -> dict[str, Any]:
    arrival, departure = tool.stay(args)
    nights = [arrival + timedelta(days=n) for n in range((departure - arrival).days)]
    body = {"ServiceId": tool.service_id, "FirstTimeUnitStartUtc": _utc(tool.at(nights[0], time())),
            "LastTimeUnitStartUtc": _utc(tool.at(nights[-1], time()))}
    answer = await tool.post("services/getAvailability", body)
    units, categories = answer.get("TimeUnitStartsUtc"), answer.get("CategoryAvailabilities")
    if not isinstance(units, list) or not isinstance(categories, list):
        raise bad_answer(VENDOR, "category availabilities")
    wanted = [_instant(tool.at(n, time())) for n in nights]
    index = {_instant(u): i for i, u in enumerate(units)}
    if any(w not in index for w in wanted):
        raise bad_answer(VENDOR, "every night of the stay")
    by_id = {c.get("CategoryId"): c.get("Availabilities") for c in categories if isinstance(c, dict)}
    rooms = {}
    for name, category_id in tool.room_types.items():
        if args.get("room_type") and name != args["room_type"]:
            continue
        counts = by_id.get(category_id)
        if not isinstance(counts, list) or len(counts) < len(units):
            raise bad_answer(VENDOR, f"the availability of {name}")
        rooms[name] = min(int(counts[index[w]]) for w in wanted)
    return {"arrival": arrival.isoformat(), "departure": departure.isoformat(), "rooms": rooms,
            "available": any(n > 0 for n in rooms.values())}


async def _existing(tool: MewsTool, start: datetime, end: datetime, category: str,
                    first: str, last: str) -> dict[str, Any] | None:
    answer = await tool.post("reservations/getAll/2023-06-06", {
        "ServiceIds": [tool.service_id], "States": LIVE_STATES, "Limitation": {"Count": 100},
        "CollidingUtc": {"StartUtc": _utc(start), "EndUtc": _utc(end)}})
    reservations = answer.get("Reservations")
    if not isinstance(reservations, list):
        raise bad_answer(VENDOR, "a list of reservations")
    same = [r for r in reservations if isinstance(r, dict)
            and r.get("RequestedResourceCategoryId") == category
            and _instant(r.get("ScheduledStartUtc")) == start and _instant(r.get("ScheduledEndUtc")) == end]
    if not same:
        return None
    customers = (await tool.post("customers/getAll", {"CustomerIds": [r.get("AccountId") for r in same],
                                                      "Limitation": {"Count": 100}})).get("Customers")
    if not isinstance(customers, list):
        raise bad_answer(VENDOR, "a list of customers")
    named = {c.get("Id") for c in customers if isinstance(c, dict)
             and str(c.get("LastName", "")).casefold() == last.casefold()
             and str(c.get("FirstName") or "").casefold() == first.casefold()}
    return next((r for r in same if r.get("AccountId") in named), None)


async def _customer(tool: MewsTool, first: str, last: str, args: Mapping[str, Any]) -> str:
    email = str(args.get("email") or "")
    if email:
        answer = await tool.post("customers/getAll", {"Emails": [email], "Limitation": {"Count": 10}})
        found = answer.get("Customers")
        if isinstance(found, list) and found and isinstance(found[0], dict) and found[0].get("Id"):
            return str(found[0]["Id"])
    body = {"FirstName": first, "LastName": last, "OverwriteExisting": False}
    if email:
        body["Email"] = email
    if args.get("phone"):
        body["Phone"] = str(args["phone"])
    customer = await tool.post("customers/add", body)
    if not customer.get("Id"):
        raise bad_answer(VENDOR, "a customer id")
    return str(customer["Id"])


def _reservation_result(reservation: Mapping[str, Any], args: Mapping[str, Any],
                        already: bool) -> dict[str, Any]:
    if not reservation.get("Id"):
        raise bad_answer(VENDOR, "a reservation id")
    return {"reservation_id": str(reservation["Id"]), "number": str(reservation.get("Number") or ""),
            "state": str(reservation.get("State") or ""), "arrival": args["arrival"],
            "departure": args["departure"], "room_type": args["room_type"], "guests": args["guests"],
            "already_reserved": already}


async def _reserve(tool: MewsTool, args: Mapping[str, Any], key: str) -> dict[str, Any]:
    arrival, departure = tool.stay(args)
    category = tool.category(str(args["room_type"]))
    parts = str(args["name"]).split()
    first, last = " ".join(parts[:-1]), parts[-1]
    start, end = tool.at(arrival, tool.check_in), tool.at(departure, tool.check_out)
    found = await _existing(tool, start, end, category, first, last)
    if found is not None:
        return _reservation_result(found, args, True)
    customer_id = await _customer(tool, first, last, args)
    reservation = {"Identifier": key[:32], "State": "Confirmed", "StartUtc": _utc(start), "EndUtc": _utc(end),
                   "CustomerId": customer_id, "RequestedCategoryId": category, "RateId": tool.rate_id,
                   "PersonCounts": [{"AgeCategoryId": tool.adult_age_category_id,
                                     "Count": int(args["guests"])}]}
    if args.get("notes"):
        reservation["Notes"] = str(args["notes"])
    answer = await tool.post("reservations/add", {"ServiceId": tool.service_id, "Reservations": [reservation],
                                                  "SendConfirmationEmail": bool(args.get("email"))})
    made = answer.get("Reservations")
    if not isinstance(made, list) or not made or not isinstance(made[0], dict):
        raise bad_answer(VENDOR, "the reservation it made")
    return _reservation_result(made[0].get("Reservation") or {}, args, False)


_STAY = {"arrival": _DAY, "departure": _DAY}
MewsTool.OPERATIONS = {
    "availability": OperationSpec(_availability, {
        "type": "object", "properties": {**_STAY, "guests": {"type": "integer", "minimum": 1, "maximum": 12}},
        "required": ["arrival", "departure"], "additionalProperties": False}, False,
        "Rooms free for every night of a stay, by room type."),
    "reserve": OperationSpec(_reserve, {
        "type": "object",
        "properties": {**_STAY, "guests": {"type": "integer", "minimum": 1, "maximum": 12},
                       "name": {"type": "string", "pattern": r"\S+\s+\S+", "maxLength": 200},
                       "email": {"type": "string", "format": "email"},
                       "phone": {"type": "string", "maxLength": 32},
                       "notes": {"type": "string", "maxLength": 2000}},
        "required": ["arrival", "departure", "guests", "room_type", "name"], "additionalProperties": False},
        True, "Reserve a room for a stay."),
}
