"""Cost of the numpy MiniLM encoder: load time, one short caller turn, and a batch of 32 turns.

Run: python -m evals.nlu.bench
     OPENBLAS_NUM_THREADS=1 python -m evals.nlu.bench    (one core, as a busy worker would give it)

Figures are wall-clock medians on this machine, printed, never asserted.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from cells.nlu.embeddings import SentenceEncoder

SHORT = "What time do you close on Fridays?"
BATCH = [f"Could I book a cleaning for {day} at {hour} o'clock, please?"
         for day in ("Monday", "Tuesday", "Friday", "Saturday") for hour in range(8, 16)]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm: page in the weights, first-call allocations
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    start = time.perf_counter()
    encoder = SentenceEncoder()
    load = 1000 * (time.perf_counter() - start)
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
    tokens = int(encoder.tokenize([SHORT])[2].sum())
    print(f"BLAS threads: {threads}; cores: {os.cpu_count()}")
    print(f"load (weights memory-mapped, linear layers transposed): {load:.0f} ms")
    print(f"one short turn ({tokens} word pieces): {median_ms(lambda: encoder.encode([SHORT]), 40):.1f} ms")
    batch = median_ms(lambda: encoder.encode(BATCH), 8)
    print(f"batch of {len(BATCH)}: {batch:.0f} ms, {batch / len(BATCH):.1f} ms per turn")


if __name__ == "__main__":
    main()
