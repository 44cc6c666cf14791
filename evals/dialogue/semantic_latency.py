"""What reading by meaning adds to each caller turn of the Reception policy, in milliseconds.

Plays every conversation of evals.dialogue.conversations twice, once with the policy's SemanticReader
(the embedding matcher behind the rules) and once by rules alone, and times each caller turn from the
message to the agent's full reply (tool calls included, as evals.dialogue.harness runs them). The
encoder is warmed first, as the worker's warm_up does. Also reported: the time the policy holds the
event loop per turn (its replay, where every turn's reading comes from the cache; the newest turn is
embedded in a worker thread before it). Wall times swing with the machine's load; the process's CPU
time per turn (all threads) is the steadier figure of what the matcher costs.

Run: python -m evals.dialogue.semantic_latency
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from datetime import datetime

from cells.agents.reception.policy import ReceptionPolicy
from cells.agents.reception.semantic import shared_reader
from evals.dialogue.conversations import CONVERSATIONS, FRESH, Conversation
from evals.dialogue.harness import NOW, FakeCall


def turn_times(c: Conversation, semantic: bool) -> tuple[list[float], list[float], list[float]]:
    """Per caller turn: wall and CPU time of the whole reply, and wall time of the replay alone (ms)."""
    call = FakeCall(ReceptionPolicy(clock=lambda: NOW, reader=semantic))
    for name, service, start, phone in c.before:
        call.calendar.book(name, service, datetime.fromisoformat(start), phone)
    whole, cpu, replay = [], [], []
    for line in c.lines:
        start, start_cpu = time.perf_counter(), time.process_time()
        call.say(line)
        whole.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
        start = time.perf_counter()
        call.policy.respond(call.messages[:-1])  # the replay the last reply ran, from the cache
        replay.append(1000 * (time.perf_counter() - start))
    return whole, cpu, replay


def summary(label: str, values: Sequence[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (f"{label:<36} median {statistics.median(ordered):6.1f} ms   "
            f"mean {statistics.fmean(ordered):6.1f} ms   p90 {p90:6.1f} ms")


def main() -> None:
    if not shared_reader().warm_up():
        print("the sentence-embedding model is not installed: nothing to measure")
        return
    conversations = CONVERSATIONS + FRESH
    figures: dict[bool, tuple[list[float], ...]] = {False: ([], [], []), True: ([], [], [])}
    for c in conversations:
        for semantic in (False, True):
            for total, new in zip(figures[semantic], turn_times(c, semantic), strict=True):
                total += new
    (rules_whole, rules_cpu, rules_replay), (sem_whole, sem_cpu, sem_replay) = figures[False], figures[True]
    print(f"{len(conversations)} conversations, {len(sem_whole)} caller turns")
    print(summary("reply wall, rules only", rules_whole))
    print(summary("reply wall, rules + matcher", sem_whole))
    print(summary("reply CPU, rules only", rules_cpu))
    print(summary("reply CPU, rules + matcher", sem_cpu))
    print(summary("added CPU per turn", [s - r for s, r in zip(sem_cpu, rules_cpu, strict=True)]))
    print(summary("event loop held (replay), rules", rules_replay))
    print(summary("event loop held (replay), + matcher", sem_replay))


if __name__ == "__main__":
    main()
