"""Did a scripted call leave the calendar as its caller meant? Seeds the bookings a script needs
before the call and compares the calendar after it with the script's expected booking."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cells.agents.reception.calendar import Calendar
from cells.simulator.scripts import BookingScript


def calendar_path(data_dir: Path) -> Path:
    return data_dir / "calendar.json"  # where the embedded worker's demo agent keeps its bookings


def read_bookings(data_dir: Path) -> list[dict[str, Any]]:
    path = calendar_path(data_dir)
    return json.loads(path.read_text())["bookings"] if path.exists() else []


def seed(data_dir: Path, script: BookingScript, today: date) -> list[str]:
    """Books the script's existing appointments (the slots must be free); their ids."""
    if not script.seed:
        return []
    cal = Calendar(path=calendar_path(data_dir))
    ids = []
    for s in script.seed:
        start = datetime.combine(s.day(today), datetime.strptime(s.time, "%H:%M").time())
        ids.append(cal.book(s.name, s.service, start, phone=s.phone).id)
    return ids


def check(script: BookingScript, before: list[dict[str, Any]], after: list[dict[str, Any]],
          disposition: str | None, today: date, seeded: tuple[str, ...] | list[str] = ()) -> list[str]:
    """What is wrong with the call's outcome ([] when it is right)."""
    problems: list[str] = []
    old = {json.dumps(b, sort_keys=True) for b in before}
    changed = [b for b in after if json.dumps(b, sort_keys=True) not in old]
    gone = [b for b in before if b["id"] not in {a["id"] for a in after}]
    exp = script.expected
    if exp is None:
        if changed or gone:
            problems.append(f"the calendar changed: {changed or gone}")
    else:
        want = (exp.service, exp.day(today).isoformat(), exp.time, exp.phone)
        if len(changed) != 1:
            problems.append(f"expected one new or moved booking {want} for {exp.name}, got {changed}")
        else:
            b = changed[0]
            got = (b["service"], b["date"], b["time"], b.get("phone"))
            if got != want:
                problems.append(f"booked {got}, wanted {want}")
            if exp.name not in b["name"].lower():
                problems.append(f"booked under {b['name']!r}, wanted {exp.name!r}")
        if any(b["id"] in seeded and b["id"] not in {c["id"] for c in changed} for b in after):
            problems.append("the old appointment is still in the calendar beside the new one")
    if script.disposition and not (disposition or "").startswith(script.disposition):
        problems.append(f"call ended {disposition!r}, wanted {script.disposition!r}")
    return problems
