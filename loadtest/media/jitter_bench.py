"""Jitter buffer benchmark: the adaptive media_core.JitterBuffer against fixed-delay references.

Network traces are simulated deterministically (numpy seeds): Gilbert-Elliott bursty loss,
Pareto-distributed jitter with partial FIFO queueing (so one slow packet holds up the next ones),
explicit reordering, and delay spikes during which packets queue and then arrive in a burst.

Each buffer sees the same packets; the playout clock pops one 20 ms frame at a time. Figures per
buffer: late loss (arrived after its playout time), total loss (network loss plus late loss),
mean and p95 added delay (ms a played packet waited between arrival and playout), and concealed
audio in ms. Ratio rows divide the adaptive figure by each reference's.

Run: python -m loadtest.media.jitter_bench
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from media_core import JitterBuffer

RATE = 8000
FRAME_MS = 20
FRAME = RATE * FRAME_MS // 1000
PACKETS = 3000  # 60 s of audio per scenario
FIXED_DELAYS_MS = (40.0, 100.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    base_ms: float  # one-way propagation delay
    pareto_shape: float  # tail index of the jitter; smaller is heavier
    pareto_scale_ms: float
    fifo: float  # probability a packet cannot overtake the one before it
    reorder: float  # probability of swapping with the next packet
    ge_p: float  # Gilbert-Elliott: good -> bad transition probability per packet
    ge_r: float  # bad -> good
    ge_loss_bad: float  # loss probability in the bad state (good state: ge_loss_good)
    ge_loss_good: float
    spikes: tuple[tuple[float, float], ...]  # (start s, length ms)


SCENARIOS = (
    Scenario("clean LAN", 1, 2.0, 3.0, 0.5, 0.98, 0.0, 0.0005, 0.5, 0.5, 0.0, ()),
    Scenario("mobile 4G", 2, 60.0, 2.2, 6.0, 0.9, 0.002, 0.005, 0.3, 0.6, 0.001, ((20.0, 350.0),)),
    Scenario("bursty Wi-Fi", 3, 15.0, 1.6, 4.0, 0.7, 0.02, 0.02, 0.25, 0.7, 0.002, ()),
    Scenario(
        "congested", 4, 90.0, 2.5, 15.0, 0.95, 0.01, 0.03, 0.4, 0.5, 0.005, ((15.0, 250.0), (42.0, 500.0))
    ),
)


@dataclass
class Trace:
    seq: np.ndarray  # sequence number of each delivered packet, in arrival order
    arrival_ms: np.ndarray
    sent: int  # packets sent


def make_trace(sc: Scenario, n: int = PACKETS) -> Trace:
    rng = np.random.default_rng(sc.seed)
    send = np.arange(n) * float(FRAME_MS)
    jitter = (rng.pareto(sc.pareto_shape, n) + 1.0) * sc.pareto_scale_ms - sc.pareto_scale_ms
    arrival = send + sc.base_ms + jitter
    for start_s, length in sc.spikes:
        t0 = start_s * 1000.0
        hit = (send >= t0) & (send < t0 + length)
        arrival[hit] = np.maximum(arrival[hit], t0 + length + sc.base_ms)
    fifo = rng.random(n) < sc.fifo
    for i in range(1, n):
        if fifo[i] and arrival[i] < arrival[i - 1]:
            arrival[i] = arrival[i - 1] + 0.05
    swap = np.flatnonzero(rng.random(n - 1) < sc.reorder)
    for i in swap:
        arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    lost = np.zeros(n, dtype=bool)
    bad = False
    draws = rng.random((n, 2))
    for i in range(n):
        bad = draws[i, 0] >= sc.ge_r if bad else draws[i, 0] < sc.ge_p
        lost[i] = draws[i, 1] < (sc.ge_loss_bad if bad else sc.ge_loss_good)
    seq = np.flatnonzero(~lost)
    order = np.argsort(arrival[seq], kind="stable")
    return Trace(seq=seq[order], arrival_ms=arrival[seq][order], sent=n)


@dataclass
class Result:
    late: int
    network_lost: int
    mean_delay: float
    p95_delay: float
    concealed_ms: float
    adapt: str = ""


def pop_times(trace: Trace) -> np.ndarray:
    """Playout clock: every 20 ms from the first arrival (with a 7 ms phase) to past the end."""
    start = float(trace.arrival_ms.min()) + 7.0
    end = float(trace.arrival_ms.max()) + 500.0
    return start + np.arange(int((end - start) // FRAME_MS) + 1) * float(FRAME_MS)


def run_adaptive(trace: Trace) -> Result:
    jb = JitterBuffer(RATE, FRAME_MS, min_delay_ms=20.0, max_delay_ms=300.0, initial_delay_ms=40.0)
    payloads = [np.full(FRAME, (s % 2000) + 1, dtype=np.int16) for s in range(trace.sent)]
    i, n = 0, len(trace.seq)
    for now in pop_times(trace):
        while i < n and trace.arrival_ms[i] <= now:
            s = int(trace.seq[i])
            jb.push(s & 0xFFFF, (s * FRAME) & 0xFFFFFFFF, payloads[s], float(trace.arrival_ms[i]))
            i += 1
        if i == n and len(jb) == 0:
            break  # the stream is over: do not count the tail's concealment
        jb.pop(float(now))
    st = jb.stats()
    return Result(
        late=st.packets_late,
        network_lost=trace.sent - n,
        mean_delay=st.mean_delay_ms,
        p95_delay=st.p95_delay_ms,
        concealed_ms=st.concealed_samples * 1000.0 / RATE,
        adapt=f"+{st.frames_inserted}/-{st.frames_dropped}",
    )


def run_fixed(trace: Trace, delay_ms: float) -> Result:
    """Reference: playout time of packet k = its send time + the first packet's transit + delay.

    The pop clock plays slot k at the first pop at or after that time; a packet that has not
    arrived by then is late (if it arrives later) or lost, and its slot is concealed.
    """
    first = int(np.argmin(trace.arrival_ms))
    offset = float(trace.arrival_ms[first]) - trace.seq[first] * FRAME_MS + delay_ms
    pops = pop_times(trace)
    due = trace.seq * FRAME_MS + offset
    slot_pop = pops[np.minimum(np.searchsorted(pops, due), len(pops) - 1)]
    on_time = trace.arrival_ms <= slot_pop
    waited = (slot_pop - trace.arrival_ms)[on_time]
    first_slot = int(trace.seq[first])
    played_slots = trace.sent - first_slot
    concealed = played_slots - int(np.count_nonzero(on_time & (trace.seq >= first_slot)))
    return Result(
        late=int(np.count_nonzero(~on_time)),
        network_lost=trace.sent - len(trace.seq),
        mean_delay=float(waited.mean()) if waited.size else 0.0,
        p95_delay=float(np.percentile(waited, 95)) if waited.size else 0.0,
        concealed_ms=concealed * float(FRAME_MS),
    )


def _pct(x: int, sent: int) -> float:
    return 100.0 * x / sent


def _ratio(a: float, b: float) -> str:
    if b == 0.0:
        return "-" if a == 0.0 else "inf"
    return f"{a / b:.2f}x"


def _row(label: str, r: Result, sent: int) -> str:
    total = _pct(r.late + r.network_lost, sent)
    return (
        f"  {label:<13}{_pct(r.late, sent):>8.2f}{total:>9.2f}{r.mean_delay:>10.1f}"
        f"{r.p95_delay:>9.1f}{r.concealed_ms:>11.0f}  {r.adapt}"
    ).rstrip()


def report() -> str:
    t0 = time.perf_counter()
    head = f"  {'buffer':<13}{'late%':>8}{'loss%':>9}{'mean ms':>10}{'p95 ms':>9}{'conceal ms':>11}"
    head += "  adapt +ins/-drop"
    lines = [
        "Jitter buffer: adaptive media_core.JitterBuffer vs fixed-delay references "
        f"({PACKETS} packets of {FRAME_MS} ms per scenario, 8 kHz)",
        "delay = ms a played packet waited in the buffer; loss = network loss + late loss",
    ]
    for sc in SCENARIOS:
        trace = make_trace(sc)
        ours = run_adaptive(trace)
        refs = {d: run_fixed(trace, d) for d in FIXED_DELAYS_MS}
        lines += ["", f"{sc.name}  (network loss {_pct(trace.sent - len(trace.seq), trace.sent):.2f}%)", head]
        lines.append(_row("adaptive", ours, trace.sent))
        for d, r in refs.items():
            lines.append(_row(f"fixed {d:.0f} ms", r, trace.sent))
        for d, r in refs.items():
            lines.append(
                f"  {f'ratio /{d:.0f}':<13}{_ratio(ours.late, r.late):>8}"
                f"{_ratio(ours.late + ours.network_lost, r.late + r.network_lost):>9}"
                f"{_ratio(ours.mean_delay, r.mean_delay):>10}{_ratio(ours.p95_delay, r.p95_delay):>9}"
                f"{_ratio(ours.concealed_ms, r.concealed_ms):>11}"
            )
    lines += ["", f"measured in {time.perf_counter() - t0:.1f} s"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
