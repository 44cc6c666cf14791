"""`autospeak up`'s supervisor with real processes and a clock the test moves: a child that dies is
started again after a pause that doubles while it keeps crashing, is capped, and shrinks back once
the child has stayed up; a child that cannot be started is retried later."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from cells.launcher.supervisor import Backoff, Supervisor

CRASH = [sys.executable, "-c", "raise SystemExit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


@dataclass
class Proc:
    name: str
    args: list[str]
    url: str = "http://127.0.0.1:9/"
    proc: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _supervisor(children: list[Proc], clock: Clock, *, healthy: bool = True,
                fail_spawns: int = 0) -> tuple[Supervisor, list[str]]:
    said: list[str] = []
    failures = [fail_spawns]

    def respawn(child: Proc) -> None:  # type: ignore[misc]
        if failures[0] > 0:
            failures[0] -= 1
            raise OSError("no such file")
        child.starts.append(clock.now)
        child.start()

    sup = Supervisor(children, respawn, lambda url: healthy,  # type: ignore[arg-type]
                     backoff=Backoff(first_s=1, cap_s=4, stable_s=60), clock=clock, say=said.append)
    return sup, said


def _died(child: Proc) -> None:
    assert child.proc is not None
    child.proc.wait(30)


def test_a_crashing_child_is_restarted_with_a_growing_capped_pause() -> None:
    clock, child = Clock(), Proc("eu-worker-1", CRASH)
    child.start()
    sup, said = _supervisor([child], clock)
    for _ in range(5):
        _died(child)
        sup.poll()  # sees it dead: schedules the restart
        assert sup.table() == [("eu-worker-1", "down", len(child.starts))]
        clock.now += 0.5
        sup.poll()  # the pause is not over yet: nothing is started
        assert sup.table()[0][1] == "down"
        clock.now += 10
        sup.poll()
    assert len(child.starts) == 5
    pauses = [b - a for a, b in zip([0.0, *child.starts], child.starts, strict=False)]
    assert all(p == 10.5 for p in pauses)  # each restart waited for its turn, none early
    # The announced pauses: 1, 2, 4, then capped at 4.
    announced = [line for line in said if "restarting in" in line]
    assert [line.rsplit("in ", 1)[1] for line in announced] == ["1 s", "2 s", "4 s", "4 s", "4 s"]
    assert "exited with 3" in announced[0]


def test_a_killed_child_comes_back_and_its_pause_resets_once_stable() -> None:
    clock, child = Clock(), Proc("eu-api", SLEEP)
    child.start()
    sup, said = _supervisor([child], clock)
    try:
        first_pid = child.proc.pid if child.proc else 0
        for expected_pause in ("1 s", "2 s"):
            assert child.proc is not None
            child.proc.kill()
            _died(child)
            sup.poll()
            assert said[-1].endswith(f"restarting in {expected_pause}")
            clock.now += 5
            sup.poll()
            assert child.returncode is None and child.proc is not None and child.proc.pid != first_pid
            assert sup.table() == [("eu-api", "starting", len(child.starts))]
            sup.poll()  # it answers its health check
            assert sup.table()[0][1] == "up" and "is back" in said[-1]
        clock.now += 61  # up for a minute: the next crash waits the first pause again
        sup.poll()
        assert child.proc is not None
        child.proc.kill()
        _died(child)
        sup.poll()
        assert said[-1].endswith("restarting in 1 s")
    finally:
        if child.proc is not None:
            child.proc.kill()


def test_a_child_that_cannot_be_started_is_tried_again_later() -> None:
    clock, child = Clock(), Proc("us-worker-1", CRASH)
    child.start()
    sup, said = _supervisor([child], clock, fail_spawns=1)
    _died(child)
    sup.poll()
    clock.now += 1
    sup.poll()  # the start fails: the child stays down, with a later retry
    assert child.starts == [] and sup.table()[0][1] == "down" and "could not be started" in said[-1]
    clock.now += 1
    sup.poll()  # not yet: the retry waits the doubled pause
    assert child.starts == []
    clock.now += 2
    sup.poll()
    assert len(child.starts) == 1


def test_a_child_that_never_answers_health_stays_starting() -> None:
    clock, child = Clock(), Proc("in-worker-1", SLEEP)
    child.start()
    sup, _ = _supervisor([child], clock, healthy=False)
    try:
        assert child.proc is not None
        child.proc.kill()
        _died(child)
        sup.poll()
        clock.now += 1
        sup.poll()
        sup.poll()
        assert sup.table() == [("in-worker-1", "starting", 1)]
    finally:
        if child.proc is not None:
            child.proc.kill()
