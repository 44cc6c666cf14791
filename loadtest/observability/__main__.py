"""Prints the cost of the worker's call observer on the event loop: a `turn` event (seven stage
observations, a turn span and six stage spans through the OpenTelemetry SDK into the recent-trace
buffer), a `call_ended`, and a stream's end with a minute of frame lateness (3,000 frames)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from cells.observability import WorkerTelemetry

AT_MS = {"speech_start": 1000, "speech_end": 2500, "turn_end": 3100, "stt_final": 3300,
         "first_token": 3350, "first_tts_audio": 3500, "first_frame_sent": 3540}


def main(calls: int = 2000) -> None:
    t = WorkerTelemetry(region="eu", capacity=50, active=lambda: 1)
    observers = [t.call(call_id=f"call-{i}", tenant_id="tenant", agent_id="agent") for i in range(calls)]
    for o in observers:
        o.event("call_started", {"resumed": False})
    start = time.perf_counter()
    for o in observers:
        o.event("turn", {"index": 0, "interrupted": False, "at_ms": AT_MS})
    turn_us = (time.perf_counter() - start) / calls * 1e6
    start = time.perf_counter()
    for o in observers:
        o.event("call_ended", {"disposition": "completed"})
    end_us = (time.perf_counter() - start) / calls * 1e6
    session = SimpleNamespace(playout=SimpleNamespace(stats=SimpleNamespace(lateness=[0.001] * 3000)))
    start = time.perf_counter()
    observers[0].finished(session)
    finish_ms = (time.perf_counter() - start) * 1e3
    print(f"turn event: {turn_us:.0f} us   call_ended: {end_us:.0f} us   "
          f"stream end with 3,000 frames of lateness: {finish_ms:.2f} ms   (mean of {calls} calls)")


if __name__ == "__main__":
    main()
