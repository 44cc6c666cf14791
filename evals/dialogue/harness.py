"""Drives ReceptionPolicy as a call pipeline does: the policy speaks, its tool calls run against a real
calendar, their results go back in as messages."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cells.agents.reception.calendar import Calendar, CalendarTools
from cells.agents.reception.policy import ReceptionPolicy
from cells.providers.base import Message, TextDelta, ToolCall
from cells.tools.base import FunctionTool, ToolRegistry, TransferToHuman

NOW = datetime(2026, 3, 2, 8, 30)  # Monday morning


class FakeCall:
    """Plays the pipeline: runs the policy, executes its tool calls, feeds results back as messages."""

    def __init__(self, policy: ReceptionPolicy | None = None, calendar: Calendar | None = None,
                 bookings: Sequence[tuple[str, str, datetime]] = ()) -> None:
        self.calendar = calendar or Calendar(clock=lambda: NOW)
        for name, service, start in bookings:
            self.calendar.book(name, service, start)
        self.transfer = TransferToHuman()
        self.ended = False

        def end_call() -> dict[str, Any]:
            self.ended = True
            return {"ok": True}

        hang_up = FunctionTool("end_call", "Hang up.", {"type": "object", "properties": {}}, end_call)
        self.registry = ToolRegistry([*CalendarTools(self.calendar).adapters(), self.transfer, hang_up])
        self.policy = policy or ReceptionPolicy(clock=lambda: NOW)
        self.messages: list[Message] = [Message("system", "You are the receptionist.")]
        self.tool_log: list[ToolCall] = []
        self.greeting = self._agent_turn()
        self.replies: list[str] = [self.greeting]

    def _agent_turn(self) -> str:
        spoken = []
        while True:
            text, calls = asyncio.run(self._complete())
            spoken.append(text)
            self.messages.append(Message("assistant", text, tool_calls=tuple(calls)))
            if not calls:
                return " ".join(t for t in spoken if t)
            for call in calls:
                self.tool_log.append(call)
                confirmed = self.policy.confirms_mutations
                self.messages.append(asyncio.run(self.registry.run(call, confirmed=confirmed)))

    async def _complete(self) -> tuple[str, list[ToolCall]]:
        text, calls = "", []
        async for item in self.policy.complete(self.messages, self.registry.specs()):
            if isinstance(item, TextDelta):
                assert not calls, "text after a tool call"
                text += item.text
            elif isinstance(item, ToolCall):
                calls.append(item)  # (a Grounding item is for the call loop's claims check)
        return text, calls

    def say(self, *lines: str) -> str:
        """The caller's turns, one after the other; the agent's last reply."""
        for line in lines:
            self.messages.append(Message("user", line))
            self.replies.append(self._agent_turn())
        return self.replies[-1]

    def called(self, name: str) -> list[dict[str, Any]]:
        return [c.arguments for c in self.tool_log if c.name == name]

    def bookings(self) -> list[tuple[str, str, str]]:
        return [(b.name, b.service, b.start.isoformat(timespec="minutes")) for b in self.calendar.bookings()]
