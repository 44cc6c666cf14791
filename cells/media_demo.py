"""`autospeak demo`: a generated phone call through the media core, with what it measured.

The caller's lines are synthesised offline (eSpeak NG), band-limited to 8 kHz and G.711
encoded, then sent as 20 ms RTP-style packets over a simulated network (bursty loss,
heavy-tailed jitter, reordering). The receiving side runs what a media worker runs: the
jitter buffer, then the fused Twilio inbound path (JSON -> PCM at 16 kHz -> VAD). The agent's
reply goes the other way through the fused outbound path. Every figure printed is measured.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

import numpy as np

import media_core
from cells.speech.espeak import EspeakEngine

FRAME_MS = 20
FRAME = 160  # samples of one 20 ms frame at 8 kHz
CALLER_LINES = (
    "Hello, I would like to book a cleaning for next Tuesday morning.",
    "Nine thirty would be perfect, thank you.",
    "My name is Maria Lopez, and my number is five five five, two one eight seven.",
)
AGENT_REPLY = "Thank you, Maria. You are booked for a cleaning on Tuesday at nine thirty."
GAP_S = 1.4


@dataclass
class Segment:
    start_ms: float
    end_ms: float


def _to_8k(pcm: np.ndarray, rate: int) -> np.ndarray:
    r = media_core.Resampler(rate, 8000)
    return np.concatenate([r.process(pcm), r.flush()])


def _speech_bounds(clip: np.ndarray) -> tuple[int, int]:
    """First and last sample of the clip louder than 40 dB under its peak (trims eSpeak's edges)."""
    loud = np.flatnonzero(np.abs(clip.astype(np.int32)) > np.abs(clip).max() / 100)
    return int(loud[0]), int(loud[-1])


def build_caller(engine: EspeakEngine, rng: np.random.Generator) -> tuple[np.ndarray, list[Segment]]:
    parts: list[np.ndarray] = [np.zeros(int(8000 * 0.8), np.int16)]
    truth: list[Segment] = []
    offset = len(parts[0])
    for line in CALLER_LINES:
        clip = _to_8k(engine.synthesize(line, voice="en-us+f3", rate_wpm=165), engine.sample_rate)
        lo, hi = _speech_bounds(clip)
        truth.append(Segment((offset + lo) / 8.0, (offset + hi) / 8.0))
        gap = np.zeros(int(8000 * GAP_S), np.int16)
        parts += [clip, gap]
        offset += len(clip) + len(gap)
    audio = np.concatenate(parts).astype(np.float64)
    audio += rng.normal(0, 60, len(audio))  # line noise about 45 dB under the speech
    audio = np.clip(audio, -32768, 32767).astype(np.int16)
    audio = np.concatenate([audio, np.zeros((-len(audio)) % FRAME, np.int16)])
    return audio, truth


def network_arrivals(n: int, loss: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival time (ms) per packet, NaN when lost: Gilbert-Elliott loss, Pareto jitter."""
    arrivals = np.full(n, np.nan)
    bad = False
    p_bad = loss / 4  # enter the bad state; it lasts ~4 packets on average
    for i in range(n):
        bad = rng.random() < (0.75 if bad else p_bad)
        if bad and rng.random() < 0.8:
            continue
        jitter = (rng.pareto(2.5) * 6.0) if rng.random() < 0.3 else rng.random() * 3.0
        arrivals[i] = i * FRAME_MS + 30.0 + jitter
    return arrivals


def _media_message(frame: np.ndarray, seq: int) -> str:
    payload = base64.b64encode(media_core.ulaw_encode(frame)).decode()
    media = {"track": "inbound", "chunk": str(seq), "timestamp": str(seq * FRAME_MS), "payload": payload}
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "media": media, "streamSid": "MZdemo"})


class Timer:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def time(self, name: str, fn, *args):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter_ns()
        out = fn(*args)
        self.samples.setdefault(name, []).append((time.perf_counter_ns() - t0) / 1000.0)
        return out

    def row(self, name: str) -> str:
        v = np.array(self.samples[name])
        return f"  {name:<26} {np.median(v):8.1f} {np.percentile(v, 95):8.1f} {len(v):7d}"


def run_demo(seed: int = 7, loss: float = 0.03) -> int:
    rng = np.random.default_rng(seed)
    print("Synthesising the caller (eSpeak NG, offline) ...", flush=True)
    engine = EspeakEngine()
    caller, truth = build_caller(engine, rng)
    n = len(caller) // FRAME
    arrivals = network_arrivals(n, loss, rng)
    print(f"Call: {n * FRAME_MS / 1000:.1f} s of caller audio in {n} packets; "
          f"{np.isnan(arrivals).sum()} lost on the simulated network\n", flush=True)

    timer = Timer()
    jb = media_core.JitterBuffer(sample_rate=8000, frame_ms=FRAME_MS)
    inbound = media_core.InboundPath(stt_rate=16000)
    order = np.argsort(np.nan_to_num(arrivals, nan=np.inf))
    events: list[media_core.VadEvent] = []
    pushed = 0
    for tick in range(n + 20):
        now = float(tick * FRAME_MS)
        while pushed < n and not np.isnan(arrivals[order[pushed]]) and arrivals[order[pushed]] <= now:
            i = int(order[pushed])
            frame = media_core.ulaw_decode(media_core.ulaw_encode(caller[i * FRAME:(i + 1) * FRAME]))
            timer.time("jitter push", jb.push, i % 65536, (i * FRAME) % 2**32, frame, float(arrivals[i]))
            pushed += 1
        frame, _kind = timer.time("jitter pop", jb.pop, now)
        msg = _media_message(frame, tick)
        result = timer.time("inbound fused (per 20 ms)", inbound.push_message, msg)
        events.extend(result.events)

    print("Caller speech: truth vs VAD (ms of stream time; the VAD sees the jitter buffer's output)")
    print(f"  {'line':<5} {'true start':>10} {'VAD start':>10} {'true end':>9} {'VAD end':>9}")
    starts = [e.time_ms for e in events if e.kind == "start"]
    ends = [e.time_ms for e in events if e.kind == "end"]
    delay = jb.stats().mean_delay_ms
    for k, seg in enumerate(truth):
        s = min(starts, key=lambda t: abs(t - delay - seg.start_ms), default=float("nan"))
        e = min(ends, key=lambda t: abs(t - delay - seg.end_ms), default=float("nan"))
        print(f"  {k + 1:<5} {seg.start_ms:10.0f} {s:10.0f} {seg.end_ms:9.0f} {e:9.0f}")
    print(f"  VAD events: {len(starts)} starts, {len(ends)} ends for {len(truth)} caller lines\n")

    print("Agent reply: eSpeak NG streamed through the fused outbound path")
    outbound = media_core.OutboundPath("MZdemo", tts_rate=engine.sample_rate)
    messages = 0
    t_start = time.perf_counter()
    first_ms = None
    for chunk in engine.iter_synthesize(AGENT_REPLY):
        out = timer.time("outbound fused (per chunk)", outbound.push, chunk)
        if out and first_ms is None:
            first_ms = (time.perf_counter() - t_start) * 1000
        messages += len(out)
    messages += len(outbound.flush())
    print(f"  {messages} media messages ({messages * FRAME_MS / 1000:.2f} s of audio); "
          f"first message ready {first_ms:.1f} ms after synthesis began\n")

    stats = jb.stats().as_dict()
    print("Jitter buffer")
    for key, value in stats.items():
        print(f"  {key:<26} {value:.1f}" if isinstance(value, float) else f"  {key:<26} {value}")
    print("\nCPU per call (this machine)          median us   p95 us   calls")
    for name in timer.samples:
        print(timer.row(name))
    inbound_stages = ("jitter push", "jitter pop", "inbound fused (per 20 ms)")
    per_frame = sum(np.median(timer.samples[k]) for k in inbound_stages)
    print(f"\nInbound media path: {per_frame:.1f} us per 20 ms frame -> about "
          f"{20_000 / per_frame:.0f} calls' inbound audio per core (media path alone)")
    return 0
