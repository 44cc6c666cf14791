"""An embedded appointment calendar for a clinic, and the agent tools over it.

In memory, optionally persisted to a JSON file after every change. One lock guards every read and
write, so threads and concurrent asyncio tasks (whose calls never await inside the lock) see
consistent state. Times are naive local clinic time; the clock is injected so tests are deterministic.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from cells.agents.reception.clinic import WEEKDAYS, ClinicConfig, default_clinic
from cells.contract.redaction import redact_text
from cells.tools.base import FunctionTool, ToolAdapter, ToolError
from regions.objectstore import private_dirs

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Booking:
    id: str
    name: str
    service: str
    dentist: str
    start: datetime
    end: datetime
    phone: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = self.start.isoformat(timespec="minutes")
        d["end"] = self.end.isoformat(timespec="minutes")
        d["date"] = self.start.date().isoformat()
        d["time"] = self.start.strftime("%H:%M")
        d["weekday"] = WEEKDAYS[self.start.weekday()]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Booking:
        return cls(id=d["id"], name=d["name"], service=d["service"], dentist=d["dentist"],
                   start=datetime.fromisoformat(d["start"]), end=datetime.fromisoformat(d["end"]),
                   phone=d.get("phone"))


def _norm_name(name: str) -> str:
    return " ".join(name.lower().split())


def name_matches(query: str, booked: str) -> bool:
    """Same person? Exact, all query words in the booked name, or a close spelling (ASR varies)."""
    q, b = _norm_name(query), _norm_name(booked)
    if not q:
        return False
    if q == b or set(q.split()) <= set(b.split()):
        return True
    return difflib.SequenceMatcher(None, q, b).ratio() >= 0.8


class Calendar:
    def __init__(self, clinic: ClinicConfig | None = None, clock: Clock = datetime.now,
                 path: str | os.PathLike[str] | None = None) -> None:
        self.clinic = clinic or default_clinic()
        self.clock = clock
        self._path = Path(path) if path else None
        self._lock = threading.RLock()
        self._depth = 0  # nesting of _locked() in this thread: the file lock is taken once
        self._bookings: dict[str, Booking] = {}
        self._next_id = 1
        with self._locked():
            pass  # loads the file, if there is one

    # --- one calendar file shared by several processes (a region's workers) -------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This thread holds the calendar, and (with a file) every process does too: the bookings are
        re-read if another process changed them, so a check and the booking it allows are atomic."""
        with self._lock:
            self._depth += 1
            try:
                if self._depth > 1 or self._path is None:
                    yield
                    return
                private_dirs(self._path.parent)
                lock_path = self._path.with_suffix(self._path.suffix + ".lock")
                with os.fdopen(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600), "r+b") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    self._reload()
                    yield
            finally:
                self._depth -= 1

    def _reload(self) -> None:
        # Read every time under the lock (a calendar is a few kilobytes): a file's mtime has the kernel
        # tick's granularity, so "unchanged since last read" cannot be told from it reliably.
        assert self._path is not None
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        self._bookings = {b["id"]: Booking.from_dict(b) for b in data.get("bookings", [])}
        self._next_id = int(data.get("next_id", len(self._bookings) + 1))

    # --- queries ------------------------------------------------------------------------------------

    def bookings(self) -> list[Booking]:
        with self._locked():
            return sorted(self._bookings.values(), key=lambda b: b.start)

    def get(self, booking_id: str) -> Booking | None:
        with self._locked():
            return self._bookings.get(booking_id)

    def find(self, name: str, *, include_past: bool = False) -> list[Booking]:
        now = self.clock()
        return [b for b in self.bookings() if name_matches(name, b.name) and (include_past or b.end > now)]

    def hours(self, day: date) -> tuple[datetime, datetime] | None:
        span = self.clinic.hours.get(day.weekday())
        if span is None:
            return None
        return datetime.combine(day, span[0]), datetime.combine(day, span[1])

    def _duration(self, service: str) -> timedelta:
        s = self.clinic.service(service)
        if s is None:
            keys = ", ".join(x.key for x in self.clinic.services)
            raise ToolError("unknown_service", f"unknown service {service!r}; we offer {keys}")
        return timedelta(minutes=s.minutes)

    def _free_dentist(self, start: datetime, end: datetime, ignore: str | None = None) -> str | None:
        busy = {b.dentist for b in self._bookings.values()
                if b.id != ignore and b.start < end and start < b.end}
        return next((d for d in self.clinic.dentists if d not in busy), None)

    def check(self, service: str, start: datetime, *, ignore: str | None = None) -> str:
        """Raises ToolError if `service` cannot start at `start`; returns the dentist who is free."""
        end = start + self._duration(service)
        with self._locked():
            if start < self.clock():
                raise ToolError("in_past", "that time has already passed")
            if start.date() > self.clock().date() + timedelta(days=self.clinic.horizon_days):
                raise ToolError("too_far", f"we book up to {self.clinic.horizon_days} days ahead")
            hours = self.hours(start.date())
            if hours is None:
                raise ToolError("closed", f"we are closed on {WEEKDAYS[start.weekday()]}s")
            if start < hours[0] or end > hours[1]:
                raise ToolError("outside_hours", "that is outside our opening hours",
                                open=hours[0].strftime("%H:%M"), close=hours[1].strftime("%H:%M"))
            if (start.minute % self.clinic.booking_grid_minutes) or start.second:
                raise ToolError("not_on_grid",
                                f"appointments start on the {self.clinic.booking_grid_minutes}-minute mark")
            dentist = self._free_dentist(start, end, ignore)
            if dentist is None:
                raise ToolError("taken", "that time is already booked")
            return dentist

    def free_slots(self, service: str, day: date, *, ignore: str | None = None) -> list[datetime]:
        hours = self.hours(day)
        duration = self._duration(service)
        if hours is None:
            return []
        out = []
        t = hours[0]
        step = timedelta(minutes=self.clinic.slot_minutes)
        with self._locked():
            now = self.clock()
            while t + duration <= hours[1]:
                if t >= now and self._free_dentist(t, t + duration, ignore) is not None:
                    out.append(t)
                t += step
        return out

    def next_available(self, service: str, after: date, days: int = 14) -> tuple[date, list[datetime]] | None:
        for k in range(1, days + 1):
            day = after + timedelta(days=k)
            if slots := self.free_slots(service, day):
                return day, slots
        return None

    # --- changes ------------------------------------------------------------------------------------

    def book(self, name: str, service: str, start: datetime, phone: str | None = None) -> Booking:
        # A card number given as a name or phone number is never stored (callers key in what they
        # have): the name keeps "[card]" in its place, the phone number is left out.
        name = redact_text(name, pii=False)
        if phone and redact_text(phone, pii=False) != phone:
            phone = None
        if not name.strip():
            raise ToolError("missing_name", "a booking needs the patient's name")
        with self._locked():
            dentist = self.check(service, start)
            booking = Booking(id=f"BK{self._next_id:04d}", name=name.strip(), service=service,
                              dentist=dentist, start=start, end=start + self._duration(service),
                              phone=phone or None)
            self._next_id += 1
            self._bookings[booking.id] = booking
            self._save()
            return booking

    def move(self, booking_id: str, new_start: datetime) -> Booking:
        with self._locked():
            old = self._require(booking_id)
            dentist = self.check(old.service, new_start, ignore=booking_id)
            moved = replace(old, start=new_start, end=new_start + (old.end - old.start), dentist=dentist)
            self._bookings[booking_id] = moved
            self._save()
            return moved

    def cancel(self, booking_id: str) -> Booking:
        with self._locked():
            booking = self._require(booking_id)
            del self._bookings[booking_id]
            self._save()
            return booking

    def _require(self, booking_id: str) -> Booking:
        booking = self._bookings.get(booking_id)
        if booking is None:
            raise ToolError("not_found", f"no booking {booking_id!r}")
        return booking

    def _save(self) -> None:
        if self._path is None:
            return
        data = {"next_id": self._next_id, "bookings": [b.to_dict() for b in self.bookings()]}
        tmp = self._path.with_suffix(self._path.suffix + ".tmp")
        private_dirs(self._path.parent)  # an agent's first booking here
        # Patients' names and numbers: readable by the service's user only.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(json.dumps(data, indent=1))
        os.chmod(tmp, 0o600)  # an older file left with wider rights
        os.replace(tmp, self._path)  # atomic: a crash never leaves half a file


# --- tools ----------------------------------------------------------------------------------------------


def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ToolError("bad_date", f"date must be YYYY-MM-DD, got {value!r}") from None


def _parse_start(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except (TypeError, ValueError):
        raise ToolError("bad_start", f"start must be YYYY-MM-DDTHH:MM, got {value!r}") from None


def _hhmm(dt: datetime) -> str:
    return dt.strftime("%H:%M")


def _filter(slots: list[datetime], preference: str | None) -> tuple[list[datetime], datetime | None]:
    """Slots matching a part of day or bound; for an exact time, all slots and that time."""
    if not preference:
        return slots, None
    p = preference.strip().lower()
    if p == "morning":
        return [s for s in slots if s.hour < 12], None
    if p == "afternoon":
        return [s for s in slots if 12 <= s.hour < 17], None
    if p == "evening":
        return [s for s in slots if s.hour >= 16], None
    bound, _, value = p.rpartition(" ")
    try:
        at = time.fromisoformat(value)
    except ValueError:
        raise ToolError("bad_time_preference", "time_preference is HH:MM, morning, afternoon, evening, "
                                               "'after HH:MM' or 'before HH:MM'") from None
    if bound == "after":
        return [s for s in slots if s.time() >= at], None
    if bound == "before":
        return [s for s in slots if s.time() < at], None
    return slots, datetime.combine(slots[0].date(), at) if slots else None


def _nearest(slots: list[datetime], target: datetime, k: int = 3) -> list[datetime]:
    return sorted(sorted(slots, key=lambda s: abs(s - target))[:k])


class CalendarTools:
    """The five calendar tools over one Calendar, as ToolAdapters (`.adapters()`)."""

    def __init__(self, calendar: Calendar, max_slots: int = 3) -> None:
        self.calendar = calendar
        self.max_slots = max_slots

    def check_availability(self, service: str, date: str,
                           time_preference: str | None = None) -> dict[str, Any]:
        cal = self.calendar
        day = _parse_day(date)
        cal._duration(service)  # validates the service
        result: dict[str, Any] = {"ok": True, "service": service, "date": day.isoformat(),
                                  "weekday": WEEKDAYS[day.weekday()], "open": cal.hours(day) is not None,
                                  "requested": None, "available": None, "slots": [], "next_available": None}
        all_slots = cal.free_slots(service, day)
        if time_preference and ":" in time_preference and " " not in time_preference.strip():
            try:
                at = time.fromisoformat(time_preference.strip())
            except ValueError:
                raise ToolError("bad_time_preference", f"not a time: {time_preference!r}") from None
            target = datetime.combine(day, at)
            result["requested"] = at.strftime("%H:%M")
            try:
                cal.check(service, target)
                result["available"] = True
            except ToolError as e:
                result["available"] = False
                result["reason"] = e.code
            result["slots"] = [_hhmm(s) for s in _nearest(all_slots, target, self.max_slots)]
        else:
            matching, _ = _filter(all_slots, time_preference)
            result["available"] = bool(matching)
            result["slots"] = [_hhmm(s) for s in _spread(matching, self.max_slots)]
        if not all_slots:
            result["reason"] = result.get("reason") or ("closed" if not result["open"] else "full")
            if (nxt := cal.next_available(service, day)) is not None:
                result["next_available"] = {"date": nxt[0].isoformat(), "weekday": WEEKDAYS[nxt[0].weekday()],
                                            "slots": [_hhmm(s) for s in _spread(nxt[1], self.max_slots)]}
        return result

    def create_booking(self, name: str, service: str, start: str, phone: str | None = None) -> dict[str, Any]:
        at = _parse_start(start)
        try:
            booking = self.calendar.book(name, service, at, phone)
            if phone and booking.phone is None:
                return {"ok": True, "booking": booking.to_dict(), "phone_refused": "not a phone number"}
        except ToolError as e:
            if e.code == "taken":
                e.details["alternatives"] = [_hhmm(s) for s in
                                             _nearest(self.calendar.free_slots(service, at.date()), at)]
            raise
        return {"ok": True, "booking": booking.to_dict()}

    def _resolve(self, booking_id: str | None, name: str | None) -> Booking:
        if booking_id:
            b = self.calendar.get(booking_id)
            if b is None:
                raise ToolError("not_found", f"no booking {booking_id!r}")
            return b
        if not name:
            raise ToolError("missing_argument", "give booking_id or name")
        found = self.calendar.find(name)
        if not found:
            raise ToolError("not_found", f"no upcoming booking under {name!r}")
        if len(found) > 1:
            raise ToolError("ambiguous", f"{len(found)} upcoming bookings under {name!r}",
                            bookings=[b.to_dict() for b in found])
        return found[0]

    def move_booking(self, new_start: str, booking_id: str | None = None,
                     name: str | None = None) -> dict[str, Any]:
        booking = self._resolve(booking_id, name)
        at = _parse_start(new_start)
        try:
            moved = self.calendar.move(booking.id, at)
        except ToolError as e:
            if e.code == "taken":
                free = self.calendar.free_slots(booking.service, at.date(), ignore=booking.id)
                e.details["alternatives"] = [_hhmm(s) for s in _nearest(free, at)]
            raise
        previous = booking.start.isoformat(timespec="minutes")
        return {"ok": True, "booking": moved.to_dict(), "previous_start": previous}

    def cancel_booking(self, booking_id: str | None = None, name: str | None = None) -> dict[str, Any]:
        booking = self._resolve(booking_id, name)
        return {"ok": True, "cancelled": self.calendar.cancel(booking.id).to_dict()}

    def find_booking(self, name: str) -> dict[str, Any]:
        return {"ok": True, "bookings": [b.to_dict() for b in self.calendar.find(name)]}

    def adapters(self) -> list[ToolAdapter]:
        services = [s.key for s in self.calendar.clinic.services]
        svc = {"type": "string", "enum": services, "description": "service key"}
        start = {"type": "string", "description": "local start time, YYYY-MM-DDTHH:MM"}
        ident = {"booking_id": {"type": "string"}, "name": {"type": "string", "description": "patient name"}}

        def obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
            return {"type": "object", "properties": props, "required": required}

        return [
            FunctionTool("check_availability", "Free appointment slots for a service on a date.",
                         obj({"service": svc, "date": {"type": "string", "description": "YYYY-MM-DD"},
                              "time_preference": {"type": "string", "description":
                                                  "HH:MM, morning, afternoon, evening, 'after HH:MM'"}},
                             ["service", "date"]), self.check_availability),
            FunctionTool("create_booking", "Book an appointment, only after the caller confirmed it.",
                         obj({"name": {"type": "string"}, "phone": {"type": "string"}, "service": svc,
                              "start": start}, ["name", "service", "start"]),
                         self.create_booking, mutating=True),
            FunctionTool("move_booking", "Move an existing appointment to a new start time.",
                         obj({**ident, "new_start": start}, ["new_start"]), self.move_booking, mutating=True),
            FunctionTool("cancel_booking", "Cancel an existing appointment.", obj(ident, []),
                         self.cancel_booking, mutating=True),
            FunctionTool("find_booking", "Upcoming appointments under a patient's name.",
                         obj({"name": {"type": "string"}}, ["name"]), self.find_booking),
        ]


def _spread(slots: list[datetime], k: int) -> list[datetime]:
    """k slots spread over the day rather than the first k, so the caller hears real choices."""
    if len(slots) <= k:
        return slots
    step = (len(slots) - 1) / (k - 1) if k > 1 else 0
    return [slots[round(i * step)] for i in range(k)]
