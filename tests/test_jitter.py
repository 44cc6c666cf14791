"""media_core.JitterBuffer: behaviour a caller notices (order, loss, concealment, errors)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media_core import JitterBuffer, JitterStats, MediaError

FRAME = 160  # 20 ms at 8 kHz
KINDS = {"normal", "concealed", "silence"}
OUTCOMES = {"ok", "duplicate", "late", "held", "reset"}
Packet = tuple[int, int, np.ndarray, float]


def frame(ident: int) -> np.ndarray:
    """A constant frame whose value names the packet; the last sample is never crossfaded."""
    return np.full(FRAME, ident, dtype=np.int16)


def stream(n: int, delay: Callable[[int], float], seq0: int = 0, ts0: int = 0) -> list[Packet]:
    return [
        ((seq0 + i) & 0xFFFF, (ts0 + i * FRAME) & 0xFFFFFFFF, frame(i + 1), i * 20.0 + delay(i))
        for i in range(n)
    ]


def run(jb: JitterBuffer, packets: list[Packet], pops: int) -> tuple[list[tuple[np.ndarray, str]], list[str]]:
    """Deliver packets in arrival order and pop every 20 ms (5 ms phase)."""
    pending = sorted(packets, key=lambda p: p[3])
    frames: list[tuple[np.ndarray, str]] = []
    outcomes: list[str] = []
    i = 0
    for k in range(pops):
        now = k * 20.0 + 5.0
        while i < len(pending) and pending[i][3] <= now:
            outcomes.append(jb.push(*pending[i]))
            i += 1
        frames.append(jb.pop(now))
    return frames, outcomes


def played_ids(frames: list[tuple[np.ndarray, str]]) -> list[int]:
    return [int(pcm[-1]) for pcm, kind in frames if kind == "normal"]


def test_in_order_stream_comes_out_unchanged() -> None:
    jb = JitterBuffer(8000, 20, min_delay_ms=40, max_delay_ms=40, initial_delay_ms=40)
    packets = stream(50, lambda i: 3.0)
    frames, outcomes = run(jb, packets, 60)
    assert set(outcomes) == {"ok"}
    normal = [pcm for pcm, kind in frames if kind == "normal"]
    assert len(normal) == 50
    for pcm, (_, _, payload, _) in zip(normal, packets, strict=True):
        assert pcm.dtype == np.int16
        np.testing.assert_array_equal(pcm, payload)
    stats = jb.stats()
    assert (stats.packets_played, stats.packets_late, stats.packets_lost) == (50, 0, 0)


def test_silence_before_the_first_packet() -> None:
    jb = JitterBuffer()
    pcm, kind = jb.pop(0.0)
    assert kind == "silence"
    assert pcm.shape == (FRAME,) and pcm.dtype == np.int16 and not pcm.any()


def test_reordered_packets_play_in_order() -> None:
    jb = JitterBuffer(initial_delay_ms=60)
    frames, _ = run(jb, stream(100, lambda i: 25.0 if i % 2 == 0 else 1.0), 130)
    ids = played_ids(frames)
    assert ids == sorted(set(ids))
    assert jb.stats().packets_late == 0


def test_duplicates_are_reported_and_played_once() -> None:
    jb = JitterBuffer()
    packets = stream(30, lambda i: 1.0)
    copies = [(s, t, p, a + 15.0) for s, t, p, a in packets]
    frames, outcomes = run(jb, packets + copies, 45)
    assert outcomes.count("duplicate") == 30
    ids = played_ids(frames)
    assert len(ids) == len(set(ids))
    assert jb.stats().packets_duplicate == 30


def test_sequence_and_timestamp_wrap_around() -> None:
    jb = JitterBuffer()
    frames, outcomes = run(jb, stream(120, lambda i: float(i % 4), seq0=65_500, ts0=2**32 - 40 * FRAME), 140)
    assert set(outcomes) == {"ok"}
    ids = played_ids(frames)
    assert ids == sorted(ids)
    stats = jb.stats()
    assert (stats.resets, stats.packets_lost, stats.packets_late) == (0, 0, 0)
    assert stats.packets_played + stats.frames_dropped == 120


def test_loss_is_concealed_then_fades_to_exact_silence() -> None:
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=40, initial_delay_ms=40)
    t = np.arange(20 * FRAME)
    tone = (8000 * np.sin(2 * np.pi * 180 * t / 8000)).astype(np.int16)
    packets = [(i, i * FRAME, tone[i * FRAME : (i + 1) * FRAME], i * 20.0 + 1.0) for i in range(20)]
    frames, _ = run(jb, packets, 35)
    kinds = [kind for _, kind in frames]
    first = kinds.index("concealed")
    assert frames[first][0].any()
    # No click where concealment takes over: the step is no bigger than the tone's own slope.
    step = abs(int(frames[first][0][0]) - int(frames[first - 1][0][-1]))
    assert step < 1500
    for pcm, kind in frames[first + 3 :]:  # 60 ms into the loss
        assert kind == "silence"
        assert not pcm.any()
    assert 0 < jb.stats().concealed_samples <= 3 * FRAME


def test_packet_after_its_playout_time_is_late() -> None:
    jb = JitterBuffer()
    run(jb, [p for p in stream(30, lambda i: 1.0) if p[0] != 5], 40)
    assert jb.push(5, 5 * FRAME, frame(6), 800.0) == "late"
    assert jb.push(5, 5 * FRAME, frame(6), 801.0) == "duplicate"
    stats = jb.stats()
    assert (stats.packets_late, stats.packets_lost) == (1, 0)


def test_network_loss_is_counted() -> None:
    jb = JitterBuffer()
    run(jb, [p for p in stream(100, lambda i: 1.0) if p[0] % 10 != 3], 110)
    assert jb.stats().packets_lost == 10


def test_far_jump_is_held_then_a_second_packet_resets_the_stream() -> None:
    jb = JitterBuffer()
    run(jb, stream(10, lambda i: 1.0), 10)
    assert jb.push(30_000, 777, frame(101), 300.0) == "held"
    assert jb.push(30_001, 777 + FRAME, frame(102), 320.0) == "reset"
    ids = [int(jb.pop(330.0 + 20 * k)[0][-1]) for k in range(6)]
    assert 101 in ids and 102 in ids
    assert jb.stats().resets == 1


def test_stray_packet_is_discarded() -> None:
    jb = JitterBuffer()
    run(jb, stream(10, lambda i: 1.0), 10)
    assert jb.push(40_000, 0, frame(9), 200.0) == "held"
    assert jb.push(10, 10 * FRAME, frame(11), 201.0) == "ok"
    assert jb.stats().packets_discarded == 1


def test_target_delay_follows_jitter() -> None:
    jb = JitterBuffer(max_delay_ms=150)
    assert jb.target_delay_ms == 40
    run(jb, stream(300, lambda i: float((i * 7919) % 97)), 320)
    assert 60 < jb.target_delay_ms <= 150
    calm = JitterBuffer(max_delay_ms=150)
    run(calm, stream(300, lambda i: 1.0), 320)
    assert calm.target_delay_ms == 20


def test_stats_object() -> None:
    jb = JitterBuffer()
    run(jb, stream(20, lambda i: 1.0), 25)
    stats = jb.stats()
    assert isinstance(stats, JitterStats)
    d = stats.as_dict()
    assert d["packets_received"] == 20 == stats.packets_received
    assert set(d) >= {"packets_late", "packets_lost", "concealed_samples", "mean_delay_ms", "p95_delay_ms"}
    assert stats.mean_delay_ms <= stats.p95_delay_ms + 1.0
    with pytest.raises(AttributeError):
        stats.packets_played = 0  # type: ignore[misc]
    jb.reset()
    assert jb.stats().packets_received == 0 and len(jb) == 0


def test_numpy_integers_are_accepted() -> None:
    jb = JitterBuffer()
    assert jb.push(np.uint16(7), np.uint32(2**32 - 1), frame(1), np.float64(0.0)) == "ok"
    assert len(jb) == 1


@pytest.mark.parametrize(
    "payload",
    [
        np.zeros(FRAME, np.float32),
        np.zeros(FRAME, np.int32),
        np.zeros((2, 80), np.int16),
        [0] * FRAME,
        b"\0" * 320,
    ],
)
def test_wrong_payload_type_is_a_type_error(payload: object) -> None:
    with pytest.raises(TypeError):
        JitterBuffer().push(0, 0, payload, 0.0)


@pytest.mark.parametrize("n", [0, 1, FRAME - 1, FRAME + 1, 2 * FRAME])
def test_wrong_frame_size_is_a_media_error(n: int) -> None:
    with pytest.raises(MediaError, match="exactly one frame"):
        JitterBuffer().push(0, 0, np.zeros(n, np.int16), 0.0)


@pytest.mark.parametrize(
    ("seq", "ts", "arrival", "error"),
    [
        (-1, 0, 0.0, MediaError),
        (65_536, 0, 0.0, MediaError),
        (2**80, 0, 0.0, MediaError),
        (0, 2**32, 0.0, MediaError),
        (0, -5, 0.0, MediaError),
        (0, 0, math.nan, MediaError),
        (0, 0, math.inf, MediaError),
        (1.5, 0, 0.0, TypeError),
        ("1", 0, 0.0, TypeError),
        (0, 0, "now", TypeError),
    ],
)
def test_bad_arguments(seq: object, ts: object, arrival: object, error: type[Exception]) -> None:
    jb = JitterBuffer()
    with pytest.raises(error):
        jb.push(seq, ts, frame(1), arrival)  # type: ignore[arg-type]
    assert jb.stats().packets_received == 0


def test_media_error_is_a_value_error() -> None:
    assert issubclass(MediaError, ValueError)
    with pytest.raises(ValueError):
        JitterBuffer().pop(math.nan)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 100},
        {"sample_rate": -8000},
        {"frame_ms": -20},
        {"frame_ms": 0},
        {"sample_rate": 11025, "frame_ms": 10},
        {"min_delay_ms": 50, "initial_delay_ms": 40},
        {"max_delay_ms": math.nan},
        {"min_delay_ms": -1},
    ],
)
def test_bad_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(MediaError):
        JitterBuffer(**kwargs)  # type: ignore[arg-type]


push_op = st.tuples(
    st.just("push"),
    st.integers(-10, 70_000),
    st.integers(-10, 2**32 + 10),
    st.sampled_from([FRAME, FRAME, FRAME, 0, 7]),
    st.one_of(st.floats(-1e3, 1e6), st.floats(allow_nan=True, allow_infinity=True)),
)
pop_op = st.tuples(st.just("pop"), st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(push_op, pop_op), max_size=200))
def test_arbitrary_calls_only_raise_documented_errors(ops: list[tuple]) -> None:
    jb = JitterBuffer()
    for op in ops:
        try:
            if op[0] == "push":
                _, seq, ts, n, arrival = op
                assert jb.push(seq, ts, np.ones(n, np.int16), arrival) in OUTCOMES
            else:
                pcm, kind = jb.pop(op[1])
                assert pcm.shape == (FRAME,) and pcm.dtype == np.int16 and kind in KINDS
        except MediaError:
            pass
    stats = jb.stats()
    assert stats.packets_played <= stats.packets_received
    assert math.isfinite(stats.mean_delay_ms) and math.isfinite(stats.p95_delay_ms)


@settings(max_examples=40, deadline=None)
@given(
    seq0=st.integers(0, 65_535),
    ts0=st.integers(0, 2**32 - 1),
    jitter=st.lists(st.floats(0.0, 60.0), min_size=80, max_size=80),
)
def test_bounded_jitter_loses_nothing_and_keeps_order(seq0: int, ts0: int, jitter: list[float]) -> None:
    jb = JitterBuffer(min_delay_ms=80, max_delay_ms=80, initial_delay_ms=80)
    frames, outcomes = run(jb, stream(80, lambda i: jitter[i], seq0=seq0, ts0=ts0), 100)
    assert set(outcomes) == {"ok"}
    ids = played_ids(frames)
    assert ids == sorted(set(ids))
    stats = jb.stats()
    assert stats.packets_late == 0
    assert stats.packets_played + stats.frames_dropped == 80
