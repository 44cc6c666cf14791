"""`autospeak bench turn`: end of turn on real speech, VAD x endpointing side by side, per line condition.

Each case (evals.turn.dataset: whole recordings, sentences with an inserted pause, digit strings
with a pause between the groups) is put on a line (a lead-in, faint line noise, and noise of a
kind at 20 or 10 dB), sent as carrier media (G.711 mu-law, 20 ms Twilio `media` messages) through
the call's fused inbound path with either VAD (the noise gate + earshot, or the gate + Silero v6
run natively), and the frames are replayed into the call's Endpointer with either policy (fixed
silence with the text rules, or the smart-turn model at each pause), polled every frame on the
stream clock as the call loop does. A model answer reaches the endpointer after the check's own
CPU time, in stream time. Reported: turns ended before the caller's real end (cut-offs, by
pause length), no end at all, late ends, and the wait from the last speech sample to the end;
then the cost of each VAD per message and of the model per check.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import media_core
from cells.call.endpointing import Endpointer, EndpointingConfig
from evals.turn.dataset import (
    DEFAULT_MANIFEST,
    FRAME,
    NOISE_VARIANTS,
    PAUSES_S,
    RATE,
    Case,
    build,
    on_the_line,
)

STT_RATE = 16_000
VAD_MIN_SILENCE_MS = 160.0  # CallConfig.vad_min_silence_ms
LATE_MS = 1500.0  # a wait longer than this after the real end counts as late
Variants = Sequence[tuple[str, float | None]]
Results = dict[tuple[str, str, str], "Outcome"]  # (vad, policy, line condition)


class SimChecker:
    """Scores with the real model and delivers the answer after its CPU time (stream clock), or
    after `delay_ms` when given (tests: the same answer at the same moment on any machine).
    Scores are cached per (stream, audio length) so that policies share one computation."""

    def __init__(self, score: Callable[[np.ndarray, int], float], delay_ms: float | None = None) -> None:
        self.score = score
        self.delay_ms = delay_ms
        self.cpu_ms: list[float] = []
        self.wall_ms: list[float] = []
        self._cache: dict[tuple[str, int], tuple[float, float]] = {}
        self.stream = ""
        self.now_ms = 0.0
        self._due: list[tuple[float, Callable[[float | None], None], float]] = []

    def start(self, stream: str) -> None:
        self.stream, self._due, self.now_ms = stream, [], 0.0

    def request(self, pcm: np.ndarray, rate: int, done: Callable[[float | None], None]) -> None:
        key = (self.stream, len(pcm))
        if key not in self._cache:
            wall, cpu = time.perf_counter(), time.thread_time()
            p = self.score(pcm, rate)
            self.cpu_ms.append(1000 * (time.thread_time() - cpu))
            self.wall_ms.append(1000 * (time.perf_counter() - wall))
            self._cache[key] = (p, self.cpu_ms[-1])
        p, cost = self._cache[key]
        self._due.append((self.now_ms + (cost if self.delay_ms is None else self.delay_ms), done, p))

    def deliver(self, now_ms: float) -> None:
        self.now_ms = now_ms
        ready = [d for d in self._due if d[0] <= now_ms]
        self._due = [d for d in self._due if d[0] > now_ms]
        for _, done, p in ready:
            done(p)


@dataclasses.dataclass(frozen=True)
class Frame:
    pcm: np.ndarray
    probabilities: Sequence[float]
    events: tuple[tuple[str, float], ...]


def messages(case: Case) -> list[str]:
    n = len(case.pcm) // FRAME
    ulaw = media_core.ulaw_encode(case.pcm[: n * FRAME])
    return [json.dumps({"event": "media", "media": {"track": "inbound", "payload": base64.b64encode(
        ulaw[i * FRAME:(i + 1) * FRAME]).decode()}}) for i in range(n)]


def through_inbound(msgs: list[str], neural: media_core.NeuralVad | None) -> tuple[list[Frame], float]:
    """The fused inbound path's frames for a stream, and its CPU time (us) over all messages."""
    inbound = media_core.InboundPath(stt_rate=STT_RATE, min_silence_ms=VAD_MIN_SILENCE_MS, neural=neural)
    out = []
    cpu = time.thread_time_ns()
    raw = [inbound.push_message(m) for m in msgs]
    cpu_us = (time.thread_time_ns() - cpu) / 1000
    for f in raw:
        out.append(Frame(f.pcm, f.probabilities, tuple((e.kind, e.time_ms) for e in f.events)))
    return out, cpu_us


def replay(frames: list[Frame], config: EndpointingConfig, checker: SimChecker | None) -> float | None:
    """Stream time (ms) at which the Endpointer ended the turn, or None."""
    ep = Endpointer(config, checker)
    ep.on_partial("okay")  # no recogniser here: the text rules see a finished word
    stream_ms = 0.0
    for frame in frames:
        stream_ms += 1000.0 * len(frame.pcm) / STT_RATE
        ep.on_audio(frame.pcm, STT_RATE, frame.probabilities)
        for kind, t in frame.events:
            (ep.on_speech_start if kind == "start" else ep.on_speech_end)(t)
        if checker is not None:
            checker.deliver(stream_ms)
        if ep.poll(stream_ms):
            return stream_ms
    return None


@dataclasses.dataclass
class Outcome:
    cases: int = 0
    cut: dict[str, int] = dataclasses.field(default_factory=dict)  # by where: "0.4 s", ..., "natural"
    never: int = 0
    late: int = 0
    waits: list[float] = dataclasses.field(default_factory=list)

    def add(self, case: Case, end_ms: float | None) -> None:
        self.cases += 1
        real_end = 1000.0 * case.speech_end / RATE
        if end_ms is None:
            self.never += 1
        elif end_ms < real_end:
            where = "natural"  # a pause of the recording itself, or a gap inside a word
            for s, e in case.pauses:
                if 1000 * s / RATE <= end_ms <= 1000 * e / RATE + 400:
                    where = f"{(e - s) / RATE:.1f} s"
            self.cut[where] = self.cut.get(where, 0) + 1
        else:
            self.waits.append(end_ms - real_end)
            self.late += end_ms - real_end > LATE_MS

    def cuts(self) -> int:
        return sum(self.cut.values())


VADS = ("earshot", "silero")
POLICIES: dict[str, EndpointingConfig] = {
    "fixed silence": EndpointingConfig(use_model=False),
    "smart-turn": EndpointingConfig(),
    "smart-turn, re-check": EndpointingConfig(model_recheck_ms=700.0),  # the default until Dec 2026
}


def evaluate(cases: list[Case], policies: dict[str, EndpointingConfig], checker: SimChecker,
             variants: Variants = NOISE_VARIANTS, vads: Sequence[str] = VADS,
             log: Callable[[str], None] = lambda s: None) -> tuple[Results, dict[str, list[float]]]:
    """Outcomes per (vad, policy, line condition), and each VAD's CPU us per message."""
    neural = media_core.NeuralVad.from_installed()
    out: Results = {}
    vad_cost: dict[str, list[float]] = {v: [0.0, 0.0] for v in vads}  # total us, messages
    for noise, snr in variants:
        log(f"  {noise} ...")
        for i, case in enumerate(cases):
            heard = on_the_line(case, snr, i)
            msgs = messages(heard)
            for vad in vads:
                frames, cpu_us = through_inbound(msgs, neural if vad == "silero" else None)
                vad_cost[vad][0] += cpu_us
                vad_cost[vad][1] += len(msgs)
                for name, config in policies.items():
                    checker.start(f"{noise}/{i}/{vad}")
                    end = replay(frames, config, checker if config.use_model else None)
                    out.setdefault((vad, name, noise), Outcome()).add(heard, end)
    return out, vad_cost


def _cell(o: Outcome) -> str:
    w = np.array(o.waits) if o.waits else np.array([np.nan])
    return (f"{o.cuts():>3} cut {o.never + o.late:>2} miss/late  "
            f"wait p50 {np.nanmedian(w):>4.0f} p95 {np.nanpercentile(w, 95):>4.0f}")


def table(out: Results, variants: Variants) -> list[str]:
    names = [v for v, _ in variants]
    head = f"{'VAD + end of turn':<26}" + "".join(f" | {n:<39}" for n in names)
    lines = [head, "-" * len(head)]
    order = list(dict.fromkeys((v, p) for v, p, _ in out))
    configs = sorted(order, key=lambda k: (VADS.index(k[0]), order.index(k)))
    for vad, policy in configs:
        cells = "".join(f" | {_cell(out[(vad, policy, n)]):<39}" for n in names)
        lines.append(f"{vad + ' + ' + policy:<26}{cells}")
    lines.append("")
    lines.append("cut-offs by where (all line conditions): " + ", ".join(f"{p:.1f} s pause" for p in PAUSES_S)
                 + ", natural pause of a whole recording")
    for vad, policy in configs:
        total: dict[str, int] = {}
        for (v, p, _), o in out.items():
            if (v, p) == (vad, policy):
                for k, c in o.cut.items():
                    total[k] = total.get(k, 0) + c
        per = [f"{total.get(f'{p:.1f} s', 0):>3}" for p in PAUSES_S] + [f"{total.get('natural', 0):>3}"]
        lines.append(f"  {vad + ' + ' + policy:<24} " + " ".join(per))
    return lines


def report(manifest: Path = DEFAULT_MANIFEST, quick: bool = False,
           policies: dict[str, EndpointingConfig] | None = None) -> str:
    from cells.call.turn_model import TurnDetector

    cases = build(manifest, words_per_kind=0 if quick else 2)
    variants = NOISE_VARIANTS[::2] if quick else NOISE_VARIANTS
    checker = SimChecker(TurnDetector().score)
    out, vad_cost = evaluate(cases, policies or POLICIES, checker, variants,
                             log=lambda s: print(s, file=sys.stderr, flush=True))
    counts = {k: sum(c.kind == k for c in cases) for k in ("complete", "paused", "digits")}
    n_pauses = sum(len(c.pauses) for c in cases)
    pauses = ", ".join(f"{p:.1f}" for p in PAUSES_S)
    lines = [f"end of turn on real speech ({manifest}): {len(cases)} cases per line condition {counts}, "
             f"{n_pauses} inserted pauses of {pauses} s; mu-law 20 ms frames",
             f"cut: the turn ended before the caller's real end; miss/late: no end, or more than "
             f"{LATE_MS:.0f} ms after it; wait (ms): last speech sample to the turn's end, VAD lag in it", ""]
    lines += table(out, variants)
    lines.append("")
    for vad, (us, n) in vad_cost.items():
        lines.append(f"fused inbound path with {vad}: {us / max(n, 1):.1f} us CPU per 20 ms message "
                     f"(decode, resample, VAD; {int(n)} messages)")
    cpu, wall = np.array(checker.cpu_ms), np.array(checker.wall_ms)
    if len(cpu):
        lines.append(f"smart-turn check: {len(cpu)} checks, CPU mean {cpu.mean():.0f} p95 "
                     f"{np.percentile(cpu, 95):.0f} ms, wall p50 {np.median(wall):.0f} p95 "
                     f"{np.percentile(wall, 95):.0f} ms (1 intra-op thread, 8 s window, on the pool)")
    return "\n".join(lines)


def sweep(manifest: Path = DEFAULT_MANIFEST, vad: str = "silero") -> str:
    """The smart-turn policy's settings, one changed at a time, on one VAD (quiet line and 10 dB)."""
    from cells.call.turn_model import TurnDetector

    base = EndpointingConfig()
    r = dataclasses.replace
    policies = {
        "defaults": base,
        "asked at the end event": r(base, model_early_below=None),
        "no re-check": r(base, model_recheck_ms=None),
        "done >= 0.7": r(base, model_complete_p=0.7),
        "done waits 240 ms": r(base, model_complete_silence_ms=240.0),
        "done waits 320 ms": r(base, model_complete_silence_ms=320.0),
        "long wait 1400 ms": r(base, model_incomplete_silence_ms=1400.0),
        "320 ms + 1400 ms": r(base, model_complete_silence_ms=320.0, model_incomplete_silence_ms=1400.0),
    }
    cases = build(manifest)
    variants = NOISE_VARIANTS[::2]
    checker = SimChecker(TurnDetector().score)
    out, _ = evaluate(cases, policies, checker, variants, (vad,),
                      log=lambda s: print(s, file=sys.stderr, flush=True))
    head = f"smart-turn settings on {vad}, {len(cases)} cases per line condition"
    return "\n".join([head, *table(out, variants)])


def main(manifest: Path | None = None, only: str | None = None, quick: bool = False) -> int:
    """End of turn, then false interruptions (evals.turn.barge_in), or `only` one of them."""
    from evals.turn import barge_in

    parts: dict[str, Callable[[Path], str]] = {
        "end-of-turn": lambda m: report(m, quick), "barge-in": barge_in.report, "sweep": sweep}
    if only is None:
        del parts["sweep"]
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
