"""Streaming resampler benchmark: media_core.Resampler against soxr.ResampleStream (HQ, VHQ).

For each rate pair it measures (a) the cost of one 20 ms chunk, (b) the streaming lag a live
call sees, and (c) the passband flatness and alias/image levels of ours. Run it with
`python -m loadtest.media.resample_bench`.

Lag is hold-back + alignment: hold-back is input duration fed minus output duration returned
(what a stream keeps inside before it gives it back), averaged over the steady state;
alignment is how late the returned stream is against the ideal resampled signal, found by
band-limited cross-correlation with a one-shot soxr VHQ reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soxr

import media_core

PAIRS: list[tuple[int, int]] = [
    (8000, 16000),
    (16000, 8000),
    (24000, 8000),
    (22050, 8000),
    (48000, 16000),
    (16000, 24000),
]
IMPLS = ("ours", "soxr HQ", "soxr VHQ")
CHUNK_S = 0.020
TIMED_CHUNKS = 3000
WARMUP_CHUNKS = 200
# The telephone band in which flatness and aliases are judged.
BAND = (300.0, 3400.0)


class Stream:
    """One streaming resampler behind a common `process(chunk) -> array` face."""

    def __init__(self, impl: str, in_rate: int, out_rate: int, dtype: str = "int16") -> None:
        if impl == "ours":
            r = media_core.Resampler(in_rate, out_rate)
            self.process: Callable[[np.ndarray], np.ndarray] = r.process
        else:
            quality = impl.split()[1]
            s = soxr.ResampleStream(in_rate, out_rate, 1, dtype=dtype, quality=quality)
            self.process = s.resample_chunk


def chunk_len(rate: int) -> int:
    return round(rate * CHUNK_S)


def broadband(rate: int, seconds: float, seed: int = 7) -> np.ndarray:
    """White noise at -12 dBFS: excites every frequency, so correlation peaks are sharp."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, 0.25 * 32767, int(rate * seconds)), -32768, 32767).astype(np.int16)


def frame_cost_us(impl: str, in_rate: int, out_rate: int) -> tuple[float, float, float]:
    """Median, p95 and mean wall time of one process() call on a 20 ms int16 chunk.

    soxr works in internal blocks, so its cost per chunk is bursty: the mean (what sets
    throughput) sits well above its median.
    """
    n = chunk_len(in_rate)
    x = broadband(in_rate, (TIMED_CHUNKS + WARMUP_CHUNKS) * CHUNK_S + 0.1)
    chunks = [x[i * n : (i + 1) * n] for i in range(TIMED_CHUNKS + WARMUP_CHUNKS)]
    stream = Stream(impl, in_rate, out_rate)
    process = stream.process
    clock = time.perf_counter_ns
    for c in chunks[:WARMUP_CHUNKS]:
        process(c)
    samples = np.empty(TIMED_CHUNKS, dtype=np.int64)
    for i, c in enumerate(chunks[WARMUP_CHUNKS:]):
        t0 = clock()
        process(c)
        samples[i] = clock() - t0
    us = samples / 1e3
    # The mean is of the fastest 99 %: it keeps soxr's periodic block bursts but drops the rare
    # multi-ms preemptions of a shared machine.
    trimmed = float(np.mean(np.sort(us)[: int(len(us) * 0.99)]))
    return float(np.median(us)), float(np.percentile(us, 95)), trimmed


def band_limited_delay(
    y: np.ndarray, ref: np.ndarray, rate: int, f_max: float, oversample: int = 64
) -> float:
    """Seconds by which `y` lags `ref`, from their cross-spectrum restricted to 0..f_max.

    Restricting the band keeps the transition bands (where two resamplers legitimately differ)
    out of the estimate; zero-padding the inverse transform interpolates the peak to
    1/oversample of a sample.
    """
    n = min(len(y), len(ref))
    size = 1 << (2 * n - 1).bit_length()
    cross = np.fft.rfft(y[:n], size) * np.conj(np.fft.rfft(ref[:n], size))
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    cross[freqs > f_max] = 0.0
    corr = np.fft.irfft(cross, size * oversample)
    # Delays beyond +-50 ms are not plausible for any of the resamplers here.
    span = int(0.05 * rate * oversample)
    lags = np.concatenate([np.arange(0, span), np.arange(-span, 0)])
    window = np.concatenate([corr[:span], corr[-span:]])
    return float(lags[int(np.argmax(window))]) / (rate * oversample)


@dataclass
class Lag:
    hold_ms: float
    align_ms: float

    @property
    def total_ms(self) -> float:
        return self.hold_ms + self.align_ms


def streaming_lag(impl: str, in_rate: int, out_rate: int, seconds: float = 4.0) -> Lag:
    x = broadband(in_rate, seconds, seed=11).astype(np.float32) / 32768.0
    ref = soxr.resample(x, in_rate, out_rate, quality="VHQ")
    stream = Stream(impl, in_rate, out_rate, dtype="float32")
    n = chunk_len(in_rate)
    fed = returned = 0
    holds: list[float] = []
    outs: list[np.ndarray] = []
    for start in range(0, len(x) - n + 1, n):
        y = stream.process(x[start : start + n])
        outs.append(y)
        fed += n
        returned += len(y)
        # Skip the first 0.5 s: soxr fills its pipeline before it settles into a rhythm.
        if fed >= in_rate // 2:
            holds.append(fed / in_rate - returned / out_rate)
    out = np.concatenate(outs)
    f_max = 0.8 * min(in_rate, out_rate) / 2
    align = band_limited_delay(out.astype(np.float64), ref.astype(np.float64), out_rate, f_max)
    return Lag(hold_ms=1e3 * float(np.mean(holds)), align_ms=1e3 * align)


def tone(rate: int, freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def amplitudes(y: np.ndarray, rate: int, freqs: list[float]) -> list[float]:
    """Amplitude of each frequency in `y`, fitted jointly by least squares.

    Joint fitting matters: over a finite window a strong tone leaks into a lone sine/cosine
    fit at a nearby frequency (-64 dB for 1.3 kHz apart in 0.4 s), which would swamp an
    image 75 dB down.
    """
    t = np.arange(len(y)) / rate
    cols = [np.ones_like(t)]
    for f in freqs:
        cols += [np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)]
    coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y.astype(np.float64), rcond=None)
    return [float(np.hypot(coef[1 + 2 * i], coef[2 + 2 * i])) for i in range(len(freqs))]


def db(ratio: float) -> float:
    return float(20 * np.log10(max(ratio, 1e-12)))


def one_shot(impl: str, in_rate: int, out_rate: int, x: np.ndarray) -> np.ndarray:
    """Whole-signal output of a streaming resampler (float32), settling edges trimmed."""
    if impl == "ours":
        r = media_core.Resampler(in_rate, out_rate)
        y = np.concatenate([r.process(x), r.flush()])
    else:
        s = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=impl.split()[1])
        y = np.concatenate([s.resample_chunk(x), s.resample_chunk(np.zeros(0, np.float32), last=True)])
    edge = out_rate // 20
    return y[edge:-edge]


@dataclass
class Quality:
    flat_db: float  # max |gain in dB| over the telephone band
    alias_band_db: float  # worst alias/image that lands in 0..3400 Hz (nan if none can)
    alias_any_db: float  # worst alias/image anywhere in the output band


def quality(impl: str, in_rate: int, out_rate: int) -> Quality:
    seconds, amp = 0.5, 0.5
    low_nyq = min(in_rate, out_rate) / 2
    flat = 0.0
    for f in np.linspace(*BAND, 32):
        y = one_shot(impl, in_rate, out_rate, tone(in_rate, f, seconds, amp))
        flat = max(flat, abs(db(amplitudes(y, out_rate, [f])[0] / amp)))
    in_band: list[float] = []
    anywhere: list[float] = []
    stop_edge = 1.15 * low_nyq  # our design's stop-band edge (+15 % of the lower Nyquist)
    if in_rate > out_rate:
        # Downsampling: tones above the stop edge fold back to |f - k*out_rate|.
        for f in np.arange(stop_edge + 10.0, in_rate / 2 - 10.0, 73.0):
            alias = abs(f - out_rate * round(f / out_rate))
            y = one_shot(impl, in_rate, out_rate, tone(in_rate, f, seconds, amp))
            level = db(amplitudes(y, out_rate, [alias])[0] / amp)
            anywhere.append(level)
            if alias <= BAND[1]:
                in_band.append(level)
    else:
        # Upsampling: passband tones (up to our 0.85 x Nyquist pass edge) leave images at
        # k*in_rate +- f, all above the stop edge; none reaches 0..3400 Hz.
        for f in np.arange(50.0, 0.85 * low_nyq, 73.0):
            y = one_shot(impl, in_rate, out_rate, tone(in_rate, f, seconds, amp))
            images = [
                im
                for k in range(1, out_rate // in_rate + 2)
                for im in (k * in_rate - f, k * in_rate + f)
                if im < out_rate / 2
            ]
            levels = amplitudes(y, out_rate, [f, *images])[1:]
            anywhere += [db(v / amp) for v in levels]
    worst = max(in_band) if in_band else float("nan")
    return Quality(flat_db=flat, alias_band_db=worst, alias_any_db=max(anywhere))


def pair_name(a: int, b: int) -> str:
    def k(r: int) -> str:
        return f"{r / 1000:g}k"

    return f"{k(a)}->{k(b)}"


def report() -> str:
    lines: list[str] = []
    out = lines.append
    out("media_core.Resampler vs soxr.ResampleStream (int16 in/out, 20 ms chunks, one thread)")
    out("")
    out(
        "(a) cost per 20 ms chunk, microseconds: median/p95/mean over"
        f" {TIMED_CHUNKS} chunks after {WARMUP_CHUNKS} warm-up;"
    )
    out("    ratios = soxr / ours (> 1: ours is cheaper), by median and by mean (of the fastest 99 %)")
    out(
        f"{'pair':<12}{'ours':>18}{'soxr HQ':>18}{'soxr VHQ':>18}{'HQ/ours med':>13}{'VHQ/ours med':>14}"
        f"{'HQ/ours mean':>14}{'VHQ/ours mean':>15}"
    )
    for a, b in PAIRS:
        c = {impl: frame_cost_us(impl, a, b) for impl in IMPLS}
        cells = "".join(f"{c[i][0]:>6.1f}/{c[i][1]:>4.1f}/{c[i][2]:<5.1f}" for i in IMPLS)
        ratios = [c[s][k] / c["ours"][k] for k in (0, 2) for s in ("soxr HQ", "soxr VHQ")]
        out(
            f"{pair_name(a, b):<12}{cells}{ratios[0]:>12.2f}x{ratios[1]:>13.2f}x{ratios[2]:>13.2f}x"
            f"{ratios[3]:>14.2f}x"
        )
    out("")
    out("(b) streaming lag, ms = hold-back (input fed - output returned, steady-state mean)")
    out("    + alignment (cross-correlation vs one-shot soxr VHQ); ratio = soxr total / ours total")
    out(
        f"{'pair':<12}{'ours':>22}{'soxr HQ':>22}{'soxr VHQ':>22}{'HQ/ours':>10}{'VHQ/ours':>10}"
        f"{'delay_ms':>10}"
    )
    for a, b in PAIRS:
        lags = {impl: streaming_lag(impl, a, b) for impl in IMPLS}
        cells = "".join(
            f"{lags[i].total_ms:>8.2f} ({lags[i].hold_ms:5.2f}+{lags[i].align_ms:5.2f})" for i in IMPLS
        )
        ours = lags["ours"].total_ms
        out(
            f"{pair_name(a, b):<12}{cells}{lags['soxr HQ'].total_ms / ours:>9.1f}x"
            f"{lags['soxr VHQ'].total_ms / ours:>9.1f}x{media_core.Resampler(a, b).delay_ms:>10.3f}"
        )
    out("    columns: total (hold + align); delay_ms is what media_core.Resampler reports")
    out("")
    out("(c) quality (float32 tones, least-squares amplitude): flatness = max |gain dB| over 300-3400 Hz;")
    out("    alias = worst alias (downsampling, tones above the 1.15 x Nyquist stop edge) or image")
    out("    (upsampling, passband tones) relative to the tone; 'in band' = landing in 0-3400 Hz")
    out(
        f"{'pair':<12}{'flat ours':>10}{'flat HQ':>10}{'alias ours':>12}{'alias HQ':>10}"
        f"{'in band ours':>14}{'in band HQ':>12}"
    )
    for a, b in PAIRS:
        q, s = quality("ours", a, b), quality("soxr HQ", a, b)
        out(
            f"{pair_name(a, b):<12}{q.flat_db:>10.3f}{s.flat_db:>10.3f}{q.alias_any_db:>12.1f}"
            f"{s.alias_any_db:>10.1f}{q.alias_band_db:>14.1f}{s.alias_band_db:>12.1f}"
        )
    out("    in band = nan: no alias/image can land in 0-3400 Hz for that pair")
    return "\n".join(lines)


if __name__ == "__main__":
    t0 = time.perf_counter()
    print(report())
    print(f"\n(report took {time.perf_counter() - t0:.1f} s)")
