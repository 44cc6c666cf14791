"""What an agent's `record` tool writes, and how it reaches the tenant's regional database.

A `record` tool (declared in an agent record: `{"kind": "record", "record_kind": "reservation", ...}`)
keeps what a call produced (a screen result, a reservation, a message for staff) as a row of the
tenant's `tool_records` table in its home region. Workers have no database access: a worker sends a
`RecordWrite` over NATS request/reply to `records_write_subject(region)` (queue group `records`), and
its cell's control plane validates it and stores it in that tenant's scope. The reply is
`{"ok": true, "record": {...}, "created": bool}` or `{"ok": false, "error": code, "message": ...}`.

Idempotent: a write's `key` is derived from the call, the tool and the arguments, so a retried or
repeated call stores one row. A tool may declare a `capacity` (rooms per type over a date range, say):
the store refuses a write that would hold more overlapping records of one value than the limit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Final

RECORDS_QUEUE: Final = "records"
RECORD_KIND_PATTERN: Final = r"^[a-z][a-z0-9_]{0,39}$"
MAX_ARGUMENTS_BYTES: Final = 8192
STORE_BUDGET_S: Final = 3.0  # how long a tool waits for its store before it says it failed


def records_write_subject(region: str) -> str:
    return f"{region}.records.write"


def record_key(call: str, tool: str, arguments: Mapping[str, Any]) -> str:
    """The idempotency key of a write: the same call, tool and arguments give the same key."""
    body = json.dumps(dict(arguments), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{call}\0{tool}\0{body}".encode()).hexdigest()


@dataclass(frozen=True)
class Capacity:
    """At most `limits[value of per]` records whose [start, end) date ranges overlap."""

    per: str  # the argument whose value is limited (room_type)
    start: str  # the argument holding the first day (check_in)
    end: str  # the argument holding the day after the last (check_out)
    limits: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Capacity:
        return cls(str(data["per"]), str(data["from"]), str(data["to"]),
                   {str(k): int(v) for k, v in dict(data["limits"]).items()})

    def to_json(self) -> dict[str, Any]:
        return {"per": self.per, "from": self.start, "to": self.end, "limits": dict(self.limits)}


@dataclass(frozen=True)
class RecordWrite:
    tenant_id: str
    agent_id: str
    call: str  # the carrier's call sid (or the platform's call id): the call the record came from
    tool: str
    kind: str
    arguments: dict[str, Any]
    call_id: str | None = None  # the platform's call id, when the worker knows it
    capacity: Capacity | None = None

    @property
    def key(self) -> str:
        return record_key(self.call, self.tool, self.arguments)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["capacity"] = self.capacity.to_json() if self.capacity else None
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordWrite:
        cap = data.get("capacity")
        return cls(str(data["tenant_id"]), str(data["agent_id"]), str(data["call"]), str(data["tool"]),
                   str(data["kind"]), dict(data["arguments"]), data.get("call_id") or None,
                   Capacity.from_json(cap) if cap else None)


class RecordRefused(Exception):
    """The store understood the write and refused it (bad arguments, no room): never retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def capacity_problems(data: Any) -> list[str]:
    if not isinstance(data, Mapping):
        return ["capacity must be an object with per, from, to and limits"]
    problems = [f"capacity needs {k!r}" for k in ("per", "from", "to") if not isinstance(data.get(k), str)]
    limits = data.get("limits")
    if not isinstance(limits, Mapping) or not limits:
        problems.append("capacity needs limits: {value: how many}")
    elif any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in limits.values()):
        problems.append("capacity limits must be whole numbers of at least 0")
    return problems


def write_problems(write: RecordWrite) -> list[str]:
    """What makes a write unstorable, whatever the store."""
    problems = []
    if not re.match(RECORD_KIND_PATTERN, write.kind):
        problems.append(f"record kind {write.kind!r} must be lower-case letters, digits and _")
    if not write.call or len(write.call) > 64:
        problems.append("a record names its call (1 to 64 characters)")
    if not write.tool or len(write.tool) > 64:
        problems.append("a record names its tool (1 to 64 characters)")
    if len(json.dumps(write.arguments, default=str)) > MAX_ARGUMENTS_BYTES:
        problems.append(f"a record's arguments are at most {MAX_ARGUMENTS_BYTES} bytes")
    return problems


def _span(arguments: Mapping[str, Any], cap: Capacity) -> tuple[date, date]:
    try:
        start = date.fromisoformat(str(arguments.get(cap.start)))
        end = date.fromisoformat(str(arguments.get(cap.end)))
    except ValueError:
        raise RecordRefused("invalid_dates", f"{cap.start} and {cap.end} must be dates") from None
    if end <= start:
        raise RecordRefused("invalid_dates", f"{cap.end} must be after {cap.start}")
    return start, end


def check_capacity(cap: Capacity, arguments: Mapping[str, Any], held: Iterable[Mapping[str, Any]]) -> None:
    """Raises RecordRefused when `arguments` would take more than the limit, given the records `held`
    (the arguments of the same tool's stored records)."""
    value = str(arguments.get(cap.per))
    if value not in cap.limits:
        raise RecordRefused("unknown_option", f"{cap.per} {value!r} is not one of {', '.join(cap.limits)}")
    start, end = _span(arguments, cap)
    taken = 0
    for other in held:
        if str(other.get(cap.per)) != value:
            continue
        try:
            o_start, o_end = _span(other, cap)
        except RecordRefused:
            continue
        taken += o_start < end and start < o_end
    if taken >= cap.limits[value]:
        raise RecordRefused("unavailable", f"no {value} is free for those dates")
