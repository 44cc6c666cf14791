"""How a stream finds its agent, on every worker: the webhook's slot request assigns the call to an agent
(a cell's worker gets it over NATS, the embedded worker from its own webhook), and the stream that
arrives with the call's token takes that assignment. A stream with no assignment is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from cells.contract.call_token import CallClaims
from cells.contract.slots import call_key

MAX_WAIT_S = 120.0  # a slot whose stream has not arrived by then is forgotten


class Warmable(Protocol):
    @property
    def agent_id(self) -> Any: ...
    async def warm_up(self) -> None: ...


A = TypeVar("A", bound=Warmable)


@dataclass
class Assignment(Generic[A]):
    """A call this worker accepted a slot for, until its stream arrives."""

    request: dict[str, Any]
    agent: A
    at: float = field(default_factory=time.monotonic)


class Assignments(Generic[A]):
    def __init__(self, on_arriving: Callable[[str], None] | None = None) -> None:
        self._by_call: dict[str, Assignment[A]] = {}
        self._warm: dict[int, asyncio.Task[None]] = {}
        self._on_arriving = on_arriving

    def assign(self, call_id: str, request: dict[str, Any], agent: A) -> None:
        cutoff = time.monotonic() - MAX_WAIT_S
        for stale in [c for c, a in self._by_call.items() if a.at < cutoff]:
            del self._by_call[stale]
        self._by_call[call_id] = Assignment(request, agent)

    def accepted(self, call_id: str) -> None:
        """The slot is taken: load the agent's models now, before the stream arrives."""
        agent = self._by_call[call_id].agent
        if id(agent) not in self._warm:
            self._warm[id(agent)] = asyncio.get_running_loop().create_task(agent.warm_up())

    async def resolve(self, claims: CallClaims) -> A | None:
        """The agent of the call a redeemed token names, once warm; None for a call not assigned here
        (or assigned to another agent)."""
        key = call_key(claims.call_id, claims.call_sid)
        assignment = self._by_call.get(key)
        if assignment is None or str(assignment.agent.agent_id) != claims.agent_id:
            return None
        if self._on_arriving is not None:
            self._on_arriving(key)
        warm = self._warm.get(id(assignment.agent))
        if warm is not None:
            await asyncio.shield(warm)
        return assignment.agent

    def take(self, call_id: str) -> Assignment[A] | None:
        """The stream arrived: the assignment is used up."""
        return self._by_call.pop(call_id, None)
