"""The Reception dialogue's state and the actions a policy step produces.

The state is small and JSON-serialisable (`to_dict`/`from_dict`), but the policy does not need it
passed around: it rebuilds it by replaying the call's message history (see reception_policy.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# The clinic's modules read the plan's actions from here.
from cells.dialogue.actions import Action, Call, Say  # noqa: F401

# What the agent asked last; it decides how a bare answer ("nine", "yes", "john") is read.
EXPECTING = ("intent", "service", "date", "time", "choose", "name", "phone", "confirm", "change",
             "anything_else", "transfer")


@dataclass
class DialogueState:
    flow: str | None = None  # "book" | "move" | "cancel" | None (idle)
    expecting: str = "intent"
    service: str | None = None
    date: str | None = None  # YYYY-MM-DD
    time: str | None = None  # HH:MM
    preference: str | None = None  # "morning", "after 15:00", ...
    offered: list[str] = field(default_factory=list)  # HH:MM slots offered for `date`
    verified: bool = False  # the calendar said (service, date, time) is free
    name: str | None = None
    phone: str | None = None
    phone_asked: bool = False
    phone_start: str | None = None  # the digits of a number begun in the previous turn ("555 ...")
    booking: dict[str, Any] | None = None  # the existing booking being moved or cancelled
    alternative: str | None = None  # a second day named with a move, if the first is the booked one
    readback: list[Any] | None = None  # the exact details read back; a yes confirms only these
    failures: int = 0  # consecutive turns not understood
    lookup_failures: int = 0
    resume: str | None = None  # what to go back to if the caller declines a transfer
    topic: str | None = None  # the service last talked about ("how much is a checkup?" ... "book one")
    last_prompt: str = ""
    ended: bool = False

    def start_flow(self, flow: str) -> None:
        """A new task keeps who the caller is, but none of the previous task's details."""
        self.flow = flow
        self.service = self.date = self.time = self.preference = None
        self.offered = []
        self.verified = False
        self.booking = None
        self.alternative = None
        self.readback = None
        self.lookup_failures = 0

    def end_flow(self) -> None:
        self.start_flow("")
        self.flow = None
        self.expecting = "anything_else"

    def details(self) -> list[Any]:
        return [self.flow, self.service, self.date, self.time, self.name, self.phone,
                (self.booking or {}).get("id")]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DialogueState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


