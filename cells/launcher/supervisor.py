"""Keeps `autospeak up`'s children alive: a control plane or worker that dies is started again,
with a growing pause between attempts so that a child that crashes at start does not spin the CPU.

The supervisor only decides; starting a process and asking it for its health are given to it, so
its timing is tested with a clock the test moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


class Supervised(Protocol):
    """What the supervisor reads of a child (cells.launcher.stack.Child)."""

    name: str
    url: str

    @property
    def returncode(self) -> int | None: ...


@dataclass(frozen=True)
class Backoff:
    first_s: float = 1.0
    cap_s: float = 30.0
    # A child that has stayed up this long is healthy again: its next crash waits `first_s` only.
    stable_s: float = 60.0


@dataclass
class ChildState:
    restarts: int = 0
    delay_s: float = 0.0
    restart_at: float | None = None  # set while the child is down and waiting for its next start
    started_at: float | None = None
    awaiting_health: bool = False
    last_exit: int | None = None

    @property
    def state(self) -> str:
        if self.restart_at is not None:
            return "down"
        return "starting" if self.awaiting_health else "up"


class Supervisor:
    def __init__(self, children: Iterable[Supervised], respawn: Callable[[Supervised], None],
                 healthy: Callable[[str], bool], *, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic, say: Callable[[str], None] = print) -> None:
        self.children = list(children)
        self.respawn, self.healthy, self.clock, self.say = respawn, healthy, clock, say
        self.backoff = backoff or Backoff()
        self.states = {c.name: ChildState(delay_s=self.backoff.first_s, started_at=clock())
                       for c in self.children}

    def poll(self) -> None:
        """One look at every child: schedule the dead, restart those whose pause is over, and report
        those that answer their health check again."""
        now = self.clock()
        for child in self.children:
            state = self.states[child.name]
            code = child.returncode
            if code is None:
                self._alive(child, state, now)
            elif state.restart_at is None:
                self._schedule(child, state, code, now)
            elif now >= state.restart_at:
                self._restart(child, state, now)

    def table(self) -> list[tuple[str, str, int]]:
        """(child, up | starting | down, restarts so far), for the status line and the manifest."""
        return [(c.name, self.states[c.name].state, self.states[c.name].restarts) for c in self.children]

    def _alive(self, child: Supervised, state: ChildState, now: float) -> None:
        if state.awaiting_health and self.healthy(child.url):
            state.awaiting_health = False
            took = now - (state.started_at or now)
            self.say(f"{child.name} is back (healthy {took:.1f} s after restart #{state.restarts})")
        if state.started_at is not None and now - state.started_at >= self.backoff.stable_s:
            state.delay_s = self.backoff.first_s

    def _schedule(self, child: Supervised, state: ChildState, code: int, now: float) -> None:
        state.last_exit, state.restart_at, state.awaiting_health = code, now + state.delay_s, False
        self.say(f"{child.name} exited with {code}; restarting in {state.delay_s:.0f} s")
        state.delay_s = min(state.delay_s * 2, self.backoff.cap_s)

    def _restart(self, child: Supervised, state: ChildState, now: float) -> None:
        state.restarts += 1
        try:
            self.respawn(child)
        except OSError as exc:  # the executable vanished, no file handles left...: try again later
            state.restart_at = now + state.delay_s
            self.say(f"{child.name} could not be started ({exc}); next try in {state.delay_s:.0f} s")
            state.delay_s = min(state.delay_s * 2, self.backoff.cap_s)
            return
        state.restart_at, state.started_at, state.awaiting_health = None, now, True
        self.say(f"{child.name} restarted (restart #{state.restarts})")
