"""`autospeak bench turn`: end of turn on real speech, the model-based endpointer vs fixed silence.

Each case (evals.turn.dataset) is streamed as a carrier would deliver it (faint line noise, G.711
mu-law, 20 ms frames) through the call's inbound path (decode, resample to 16 kHz, VAD) into an
Endpointer, polled every frame on the stream clock as the call loop does. A model answer reaches
the endpointer after the check's own measured compute time, in stream time. Reported per policy:
mid-utterance pauses taken as the end of the turn, and the wait from the caller's real end of
speech to the turn's end.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import media_core
from cells.call.endpointing import Endpointer, EndpointingConfig
from evals.turn.dataset import DEFAULT_MANIFEST, FRAME, RATE, Case, build

STT_RATE = 16_000
NOISE_RMS = 25.0  # faint line noise, as on a quiet phone line


class SimChecker:
    """Scores with the real model and delivers the answer after its compute time (stream clock).
    Scores are cached per (case, audio length) so that several policies share one computation."""

    def __init__(self, score: Callable[[np.ndarray, int], float]) -> None:
        self.score = score
        self.costs_ms: list[float] = []
        self._cache: dict[tuple[str, int], tuple[float, float]] = {}
        self.case = ""
        self.now_ms = 0.0
        self._due: list[tuple[float, Callable[[float | None], None], float]] = []

    def request(self, pcm: np.ndarray, rate: int, done: Callable[[float | None], None]) -> None:
        key = (self.case, len(pcm))
        if key not in self._cache:
            t = time.perf_counter()
            p = self.score(pcm, rate)
            cost = 1000 * (time.perf_counter() - t)
            self.costs_ms.append(cost)
            self._cache[key] = (p, cost)
        p, cost = self._cache[key]
        self._due.append((self.now_ms + cost, done, p))

    def deliver(self) -> None:
        ready = [d for d in self._due if d[0] <= self.now_ms]
        self._due = [d for d in self._due if d[0] > self.now_ms]
        for _, done, p in ready:
            done(p)


def _messages(case: Case) -> list[str]:
    rng = np.random.default_rng(len(case.pcm))
    noisy = np.clip(case.pcm + rng.normal(0, NOISE_RMS, len(case.pcm)), -32768, 32767).astype(np.int16)
    n = len(noisy) // FRAME
    ulaw = media_core.ulaw_encode(noisy[: n * FRAME])
    return [json.dumps({"event": "media", "media": {"track": "inbound", "payload": base64.b64encode(
        ulaw[i * FRAME:(i + 1) * FRAME]).decode()}}) for i in range(n)]


def run_case(case: Case, config: EndpointingConfig, checker: SimChecker | None,
             vad_min_silence_ms: float = 160.0) -> float | None:
    """Stream time (ms) at which the turn ended, or None."""
    inbound = media_core.InboundPath(stt_rate=STT_RATE, min_silence_ms=vad_min_silence_ms)
    ep = Endpointer(config, checker)
    ep.on_partial("okay")  # no recogniser here: the text rules see a finished word
    stream_ms = 0.0
    if checker is not None:
        checker.case, checker._due = case.name, []
    for msg in _messages(case):
        frame = inbound.push_message(msg)
        stream_ms += 1000.0 * len(frame.pcm) / STT_RATE
        ep.on_audio(frame.pcm, STT_RATE, frame.probabilities)
        for ev in frame.events:
            (ep.on_speech_start if ev.kind == "start" else ep.on_speech_end)(ev.time_ms)
        if checker is not None:
            checker.now_ms = stream_ms
            checker.deliver()
        if ep.poll(stream_ms):
            return stream_ms
    return None


@dataclasses.dataclass
class Outcome:
    cut_in_pause: int = 0
    pauses: int = 0
    early_other: int = 0  # ended before the real end, not in a marked pause (a gap inside a word)
    never: int = 0
    waits: list[float] = dataclasses.field(default_factory=list)


def evaluate(cases: list[Case], config: EndpointingConfig, checker: SimChecker | None) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    for case in cases:
        o = out.setdefault(case.kind, Outcome())
        o.pauses += len(case.pauses)
        end = run_case(case, config, checker)
        end_ms = 1000.0 * case.speech_end / RATE
        if end is None:
            o.never += 1
        elif end < end_ms:
            in_pause = any(1000 * s / RATE <= end <= 1000 * e / RATE + 400 for s, e in case.pauses)
            o.cut_in_pause += in_pause
            o.early_other += not in_pause
        else:
            o.waits.append(end - end_ms)
    return out


def _line(name: str, out: dict[str, Outcome], n_cases: int) -> str:
    """Cut: turns ended before the caller's real end (in an inserted pause, or in a natural pause
    of a complete recording). Waits: for the turns that ended after the real end."""
    cut = sum(o.cut_in_pause + o.early_other for o in out.values())
    waits = [w for o in out.values() for w in o.waits]
    parts = [f"{name:<30}", f"cut early {cut:>3}/{n_cases}"]
    for kind in ("paused", "digits", "complete"):
        o = out.get(kind, Outcome())
        parts.append(f"{kind} {o.cut_in_pause + o.early_other:>2}")
    if waits:
        parts.append(f"wait after the real end: mean {np.mean(waits):.0f} p50 {np.median(waits):.0f} "
                     f"p95 {np.percentile(waits, 95):.0f} ms (n={len(waits)})")
    parts.append(f"no end {sum(o.never for o in out.values())}")
    return " | ".join(parts)


def report(manifest: Path = DEFAULT_MANIFEST) -> str:
    from cells.call.turn_model import TurnDetector

    cases = build(manifest)
    detector = TurnDetector()
    checker = SimChecker(detector.score)
    base = EndpointingConfig()
    policies: list[tuple[str, EndpointingConfig, SimChecker | None]] = [
        ("fixed silence (320 ms, today)", dataclasses.replace(base, use_model=False), None),
        ("model (defaults)", base, checker),
        ("model, asked at the end event", dataclasses.replace(base, model_early_below=None), checker),
        ("model, no re-check", dataclasses.replace(base, model_recheck_ms=None), checker),
        ("model, done >= 0.8", dataclasses.replace(base, model_complete_p=0.8), checker),
        ("model, unsure < 0.5 waits long", dataclasses.replace(base, model_incomplete_p=0.5), checker),
        ("model, done waits 320 ms", dataclasses.replace(base, model_complete_silence_ms=320.0), checker),
        ("model, long wait 1000 ms", dataclasses.replace(base, model_incomplete_silence_ms=1000.0), checker),
    ]
    counts = {k: sum(c.kind == k for c in cases) for k in ("complete", "paused", "digits")}
    lines = [f"end of turn on real speech ({manifest}): {len(cases)} cases {counts}; "
             f"waits are from the last speech sample to the turn's end (the VAD's own lag included)"]
    for name, config, chk in policies:
        lines.append(_line(name, evaluate(cases, config, chk), len(cases)))
    costs = np.array(checker.costs_ms)
    lines.append(f"model cost per check: {len(costs)} checks, mean {costs.mean():.0f} ms, "
                 f"p95 {np.percentile(costs, 95):.0f} ms (1 intra-op thread, 8 s window)")
    return "\n".join(lines)


def main(manifest: Path | None = None, only: str | None = None) -> int:
    """End of turn, then false interruptions (evals.turn.barge_in), or `only` one of them."""
    from evals.turn import barge_in

    parts = {"end-of-turn": report, "barge-in": barge_in.report}
    for name, run in parts.items():
        if only not in (None, name):
            continue
        try:
            text = run(manifest or DEFAULT_MANIFEST)
        except (FileNotFoundError, ValueError) as exc:
            print(f"autospeak bench turn: {exc}", file=sys.stderr)
            return 2
        print(text + "\n", flush=True)
    return 0
