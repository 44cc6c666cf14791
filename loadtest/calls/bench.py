"""Call benchmarks: where a turn's latency goes and how many calls one worker process carries.

(a) Orchestration overhead. A CallSession runs in this process with instant providers (no STT,
    dialogue or TTS cost) and a loopback phone. Per turn: from `turn_end` (the endpointer decided the
    caller is done) to `first_frame_sent` (the first agent frame handed to the transport). That covers
    the STT feed hop, the reply task, dialogue streaming and sentence chunking, TTS chunk handling,
    resampling and mu-law encoding, and the pacing loop's wake-up; the endpointing silence before
    `turn_end` is the turn-taking policy, not overhead, and is shown apart.
(b) Voice-to-voice latency on the embedded stack (PocketSphinx + dental ReceptionPolicy + eSpeak NG):
    one call at a time against a worker process, measured at the simulated phone from the caller's
    last speech frame to the first agent frame received, split into stages by matching the worker's
    call records (both processes stamp CLOCK_MONOTONIC, so the stamps compare directly).
(c) Capacity: N = 1, 2, 4, ... concurrent simulated calls against a fresh worker process per level,
    until 20 ms pacing slips (p99 frame jitter >= 5 ms) or the cap. Jitter is how much longer than
    20 ms a phone waited for each agent frame of a reply (the worker sends 3 frames ahead, so a burst
    at the start of a reply counts as early, not late). The simulated phones share one asyncio loop and
    one HTTP client in this process, apart from the worker, and negotiate no permessage-deflate (as
    Twilio); their own timer lag is printed next to the jitter, because a busy simulator would show up
    as jitter too. Each level's worker is started with --max-calls above the level, so levels go past
    the worker's default limit; `--levels` picks them.

Run: python -m loadtest.calls.bench [--quick] [--levels 1,16,64]   (or: autospeak bench calls ...)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from cells.call.endpointing import EndpointingConfig
from cells.call.session import CallConfig, CallSession
from cells.call.timeline import TurnTiming
from cells.contract.call_token import CallTokenAuthority
from cells.dialogue.chunker import SentenceChunker
from cells.simulator.run import worker_process as launch_worker
from cells.simulator.twilio_peer import FRAME_S
from cells.telephony.twilio_ws import MediaSocketSettings, TwilioMediaSession
from loadtest.calls.figures import JITTER_LIMIT_P99_MS, fmt, machine_busy_s, note, pct, table
from loadtest.calls.instant import InstantLlm, InstantStt, InstantTts, NoTools
from loadtest.calls.instant_profile import TTS_RATE
from loadtest.calls.loadtest_cmd import parse_levels
from loadtest.calls.sim import LOAD_LINES, SimCall, caller_audio, noise_bank, simulated_call

OVERHEAD_GOAL_P95_MS = 20.0
V2V_GOAL_P50_MS = 500.0



# -- (a) orchestration overhead, in process --------------------------------------------------------
OVERHEAD_STAGES = (("turn_end", "stt_final", "turn end -> STT final (feed hop)"),
                   ("stt_final", "first_token", "STT final -> first token (turn start, reply task)"),
                   ("first_token", "first_tts_audio", "first token -> first TTS audio (chunker, TTS)"),
                   ("first_tts_audio", "first_frame_sent", "first TTS audio -> first frame (encode, pacing)"),
                   ("turn_end", "first_frame_sent", "total overhead: turn end -> first frame sent"))


class LoopbackPhone(TwilioMediaSession):
    """The Twilio transport of an in-process session, its far end a phone that plays the agent's audio
    in real time and echoes each mark when playback reaches it, so that the session sees its turns end
    as on a real call."""

    def __init__(self) -> None:
        super().__init__(None, MediaSocketSettings(auth_token="", verify_signature=False),  # type: ignore[arg-type]
                         CallTokenAuthority(secrets.token_bytes(32)))
        self.protocol.parse(json.dumps({"event": "start", "streamSid": "MZbench", "start": {
            "streamSid": "MZbench", "callSid": "CAbench", "accountSid": "ACbench", "tracks": ["inbound"],
            "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                    "channels": 1}}}))
        self.session: CallSession | None = None
        self._play_until = 0.0

    async def send(self, text: str) -> None:  # every sender of the transport ends here
        msg = json.loads(text)
        now = time.monotonic()
        if msg["event"] == "media":
            self._play_until = max(self._play_until, now) + FRAME_S
        elif msg["event"] == "mark":
            asyncio.get_running_loop().call_later(max(0.0, self._play_until - now), self._echo,
                                                  msg["mark"]["name"])

    def _echo(self, name: str) -> None:
        if self.session is not None and not self.session.state.ended:
            self.session.on_mark(name)

    async def close(self, reason: str = "", code: int = 1000) -> None:
        pass


def _media_message(frame: bytes, seq: int) -> str:
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": "MZbench",
                       "media": {"track": "inbound", "chunk": str(seq), "timestamp": str(20 * seq),
                                 "payload": base64.b64encode(frame).decode()}})


async def overhead_turns(turns: int, speech: list[bytes] | None = None) -> list[TurnTiming]:
    """Runs `turns` caller turns through an in-process session with instant providers.

    The caller's words are pushed at once (how they arrive is not what is measured, and this keeps
    the run short); the line noise after them, during which the turn ends and the reply starts, is
    paced in real time, so the loop handles inbound frames while it replies, as on a call."""
    speech = speech or caller_audio(["Yes, please."])[0]
    noise = noise_bank()
    phone = LoopbackPhone()
    # The end-of-turn model is a provider-like cost (a check of ~0.1 s on a thread), not orchestration:
    # it stays off here, as the recogniser and the brain are instant; section (b) measures it.
    config = CallConfig(disclosure="Hello.", endpointing=EndpointingConfig(use_model=False))
    session = CallSession(config, stt=InstantStt(["yes please"] * turns),
                          llm=InstantLlm("Sure, done."), tts=InstantTts(TTS_RATE), tools=NoTools(),
                          chunker_factory=SentenceChunker, transport=phone)
    phone.session = session
    await session.start("MZbench", "CAbench")
    seq = 0

    async def noise_until(done: Any, timeout_s: float) -> None:
        nonlocal seq
        t0 = time.monotonic()
        tick = 0
        while not done() and time.monotonic() - t0 < timeout_s:
            session.on_media(_media_message(noise[seq % len(noise)], seq))
            seq += 1
            tick += 1
            await asyncio.sleep(max(0.0, t0 + tick * FRAME_S - time.monotonic()))

    try:
        await noise_until(lambda: not session.playout.speaking, 5.0)  # the disclosure plays out
        for i in range(turns):
            for frame in speech:
                session.on_media(_media_message(frame, seq))
                seq += 1

            def replied(i: int = i) -> bool:
                return (len(session.turns) > i and session.turns[i].first_frame_sent is not None
                        and not session.playout.speaking)

            await noise_until(replied, 5.0)
            await noise_until(lambda: False, 0.1)  # a short pause before the next line
    finally:
        await session.stop()
    return list(session.turns)


def _stage_ms(turns: Sequence[TurnTiming], a: str, b: str) -> list[float]:
    out = []
    for t in turns:
        ta, tb = getattr(t, a), getattr(t, b)
        if ta is not None and tb is not None:
            out.append((tb - ta) * 1000)
    return out


def overhead_section(turns: Sequence[TurnTiming]) -> str:
    rows = []
    for a, b, label in OVERHEAD_STAGES:
        ms = _stage_ms(turns, a, b)
        rows.append([label, fmt(pct(ms, 50), 2), fmt(pct(ms, 95), 2), fmt(max(ms, default=None), 2)])
    total95 = pct(_stage_ms(turns, "turn_end", "first_frame_sent"), 95)
    endpointing = _stage_ms(turns, "speech_end", "turn_end")
    rows.append(["(not overhead) endpointing: speech end -> turn end", fmt(pct(endpointing, 50), 1),
                 fmt(pct(endpointing, 95), 1), fmt(max(endpointing, default=None), 1)])
    ratio = "-" if total95 is None else f"{total95 / OVERHEAD_GOAL_P95_MS:.3f}"
    return "\n".join([
        f"(a) Orchestration overhead per turn: instant providers, in-process session, {len(turns)} turns",
        table(["stage", "p50 ms", "p95 ms", "max ms"], rows),
        f"total overhead p95 / goal ({OVERHEAD_GOAL_P95_MS:.0f} ms) = {ratio}",
    ])


# -- a worker process ------------------------------------------------------------------------------
@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self) -> float:
        """User + system CPU seconds of the worker process, all its threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def record(self, call_sid: str) -> dict[str, Any] | None:
        path = self.data_dir / "calls" / f"{call_sid}.json"
        return json.loads(path.read_text()) if path.exists() else None


@contextlib.contextmanager
def worker_process(profile: str, data_dir: Path, token: str, max_calls: int) -> Iterator[Worker]:
    with launch_worker(data_dir, token, ["--profile", profile, "--max-calls", str(max_calls)]) as (proc, url):
        yield Worker(proc, url, data_dir)



@dataclass
class Level:
    profile: str
    calls: int
    duration_s: float
    sims: list[SimCall] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    rss_base_kb: int = 0
    rss_peak_kb: int = 0
    worker_cpu_pct: float = 0.0
    sim_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0  # everything else on the machine meanwhile (other jobs skew the figures)
    old_phones: bool = False  # the simulator as it was: an HTTP client per ring, permessage-deflate on

    @property
    def failed(self) -> int:
        return sum(1 for s in self.sims if s.error or not s.arrivals)

    def jitter_ms(self) -> list[float]:
        return [x for s in self.sims for x in s.frame_lateness_ms()]

    def tick_lag_ms(self) -> list[float]:
        return [x for s in self.sims for x in s.tick_lag_ms]

    def slipped(self) -> bool:
        p99 = pct(self.jitter_ms(), 99)
        return self.failed > 0 or p99 is None or p99 >= JITTER_LIMIT_P99_MS

    def simulator_lagged(self) -> bool:
        """The phones' own timers were as late as the limit: the jitter figure is not the worker's alone."""
        lag = pct(self.tick_lag_ms(), 99)
        return lag is not None and lag >= JITTER_LIMIT_P99_MS

    def matched_turns(self) -> list[dict[str, float]]:
        """Worker turns that got a reply, each with the phone's view: the caller's last speech frame
        (the line whose end is nearest the VAD's end of speech) and the first agent frame received."""
        out = []
        for sim in self.sims:
            rec = self.records.get(sim.call_sid)
            if rec is None:
                continue
            for turn in rec["turns"]:
                if turn.get("speech_end") is None or turn.get("first_frame_sent") is None:
                    continue
                ends = [e for _, e in sim.speech]
                if not ends:
                    continue
                caller_end = min(ends, key=lambda e: abs(e - turn["speech_end"]))
                heard = sim.first_audio_after(turn["first_frame_sent"] - 0.005)
                if abs(caller_end - turn["speech_end"]) > 1.5 or heard is None:
                    continue
                out.append({**{k: turn[k] for k in ("speech_end", "turn_end", "stt_final", "first_token",
                                                     "first_tts_audio", "first_frame_sent")},
                            "caller_end": caller_end, "heard": heard})
        return out


async def _run_level(level: Level, worker: Worker, token: str, lines: list[list[bytes]],
                     noise: list[bytes]) -> None:
    # One HTTP client rings every call of the level, as one carrier would: the phones stay light.
    async with httpx.AsyncClient(timeout=10) as client:
        await _run_calls(level, worker, token, lines, noise, None if level.old_phones else client)
    await _wait_records(worker, [s.call_sid for s in level.sims if not s.error], 15.0)
    for sim in level.sims:
        rec = worker.record(sim.call_sid)
        if rec is not None:
            level.records[sim.call_sid] = rec


async def _run_calls(level: Level, worker: Worker, token: str, lines: list[list[bytes]],
                     noise: list[bytes], client: httpx.AsyncClient | None) -> None:
    deflate = "deflate" if level.old_phones else None
    # A short first call loads what a worker only loads on demand, so the baseline is a warm worker.
    warm = await simulated_call(worker.url, token, lines, noise, 1.0, client=client, compression=deflate)
    await _wait_records(worker, [warm.call_sid], 10.0)
    await asyncio.sleep(0.3)
    level.rss_base_kb = level.rss_peak_kb = worker.rss_kb()
    stop = asyncio.Event()

    async def sample_rss() -> None:
        while not stop.is_set():
            level.rss_peak_kb = max(level.rss_peak_kb, worker.rss_kb())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    sampler = asyncio.create_task(sample_rss())
    cpu0, sim0, all0, wall0 = worker.cpu_s(), time.process_time(), machine_busy_s(), time.monotonic()
    # Calls ring over up to a second, each at its own phase of the 20 ms clock, as real calls would.
    rng = np.random.default_rng(level.calls)
    spread = min(1.0, 0.05 * level.calls)
    level.sims = await asyncio.gather(*(
        simulated_call(worker.url, token, lines, noise, level.duration_s, float(rng.uniform(0, spread)),
                       client=client, compression=deflate)
        for _ in range(level.calls)))
    wall = time.monotonic() - wall0
    level.worker_cpu_pct = 100 * (worker.cpu_s() - cpu0) / wall
    level.sim_cpu_pct = 100 * (time.process_time() - sim0) / wall
    level.other_cpu_pct = max(0.0, 100 * (machine_busy_s() - all0) / wall - level.worker_cpu_pct
                              - level.sim_cpu_pct)
    stop.set()
    await sampler


async def _wait_records(worker: Worker, call_sids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(worker.record(sid) is None for sid in call_sids):
        await asyncio.sleep(0.1)


def run_level(profile: str, calls: int, duration_s: float, root: Path, token: str,
              lines: list[list[bytes]], noise: list[bytes], old_phones: bool = False) -> Level:
    level = Level(profile, calls, duration_s, old_phones=old_phones)
    # The worker's limit sits above the level, so that a refused call means the worker failed, not the cap.
    with worker_process(profile, root / f"{profile}-{calls}", token, max_calls=calls + 1) as worker:
        asyncio.run(_run_level(level, worker, token, lines, noise))
    return level


def ramp(profile: str, counts: Sequence[int], duration_s: float, root: Path, token: str,
         lines: list[list[bytes]], noise: list[bytes], first: Level | None = None) -> list[Level]:
    """Levels in order until one slips (that one is kept, to show how it slipped)."""
    levels: list[Level] = []
    for n in counts:
        level = first if first is not None and n == first.calls else run_level(
            profile, n, duration_s, root, token, lines, noise)
        levels.append(level)
        p99 = fmt(pct(level.jitter_ms(), 99), 2)
        note(f"{profile}: {n} calls: jitter p99 {p99} ms, {level.failed} failed")
        if level.slipped():
            break
    return levels


# -- (b) and (c) sections --------------------------------------------------------------------------
V2V_STAGES = (("caller_end", "speech_end", "caller's last frame -> VAD end of speech (worker)"),
              ("speech_end", "turn_end", "endpointing wait"),
              ("turn_end", "stt_final", "STT finalisation"),
              ("stt_final", "first_token", "dialogue: first token"),
              ("first_token", "first_tts_audio", "TTS: first audio"),
              ("first_tts_audio", "first_frame_sent", "encode + pacing: first frame sent"),
              ("first_frame_sent", "heard", "WebSocket -> phone receives it"))


def v2v_section(level: Level) -> str:
    turns = level.matched_turns()
    answered = {t["caller_end"] for t in turns}
    # Lines said in the last seconds before the hang-up may not have had time for their reply.
    lines_spoken = [e for s in level.sims for _, e in s.speech if e < s.ended - 3.0]
    unanswered = sum(1 for e in lines_spoken if e not in answered)
    total = [(t["heard"] - t["caller_end"]) * 1000 for t in turns]
    rows = []
    cumulative: list[float] = []
    for a, b, label in V2V_STAGES:
        ms = [(t[b] - t[a]) * 1000 for t in turns]
        cumulative = [c + m for c, m in zip(cumulative, ms, strict=True)] if cumulative else ms
        rows.append([label, fmt(pct(ms, 50)), fmt(pct(ms, 95)), fmt(pct(cumulative, 50))])
    rows.append(["voice to voice (phone's view)", fmt(pct(total, 50)), fmt(pct(total, 95)),
                 fmt(pct(total, 50))])
    p50 = pct(total, 50)
    ratio = "-" if p50 is None else f"{p50 / V2V_GOAL_P50_MS:.2f}"
    return "\n".join([
        f"(b) Voice-to-voice latency, embedded stack (PocketSphinx + ReceptionPolicy + eSpeak NG), one call "
        f"for {level.duration_s:.0f} s: {len(turns)} answered turns ({unanswered} caller lines got no reply: "
        "not counted)",
        table(["stage (each from the previous one)", "p50 ms", "p95 ms", "cum. p50 ms"], rows),
        f"voice-to-voice p50 / goal ({V2V_GOAL_P50_MS:.0f} ms, endpointing included) = {ratio}",
    ])


def capacity_rows(levels: Sequence[Level]) -> list[list[str]]:
    rows = []
    for lv in levels:
        jitter, lag = lv.jitter_ms(), lv.tick_lag_ms()
        turns = lv.matched_turns()
        v2v = [(t["heard"] - t["caller_end"]) * 1000 for t in turns]
        overhead = [(t["first_frame_sent"] - t["turn_end"]) * 1000 for t in turns]
        per_call_mb = (lv.rss_peak_kb - lv.rss_base_kb) / 1024 / lv.calls
        rows.append([
            lv.profile, str(lv.calls), f"{lv.duration_s:.0f}", str(len(jitter)), fmt(pct(jitter, 50), 2),
            fmt(pct(jitter, 99), 2),
            fmt(max(jitter, default=None), 1), fmt(pct(lag, 99), 2), fmt(pct(v2v, 50), 0),
            fmt(pct(overhead, 95), 1), f"{lv.worker_cpu_pct:.0f}", f"{lv.sim_cpu_pct:.0f}",
            f"{lv.other_cpu_pct:.0f}",
            f"{lv.rss_base_kb / 1024:.0f}", f"{per_call_mb:.2f}", str(lv.failed),
            ("SLIPPED" + (" (sim lag)" if lv.simulator_lagged() else "")) if lv.slipped() else "ok",
        ])
    return rows


def capacity_section(instant: Sequence[Level], embedded: Sequence[Level], cap: int) -> str:
    headers = ["profile", "calls", "secs", "frames", "jit p50", "jit p99", "jit max", "sim lag p99",
               "v2v p50", "ovh p95", "wrk CPU%", "sim CPU%", "other CPU%", "RSS MB", "MB/call", "failed",
               "pacing"]
    verdicts = []
    for name, levels in (("instant", instant), ("embedded", embedded)):
        ok = [lv.calls for lv in levels if not lv.slipped()]
        slipped = [lv.calls for lv in levels if lv.slipped()]
        best = f"{max(ok)} concurrent calls" if ok else "no level"
        tail = f", slips at {slipped[0]}" if slipped else f" (the cap of this run is {cap})"
        if slipped and next(lv for lv in levels if lv.slipped()).simulator_lagged():
            tail += " (the simulated phones lagged too, so part of that is the shared CPUs, not the worker)"
        verdicts.append(f"  {name}: one worker sustains {best}{tail}")
    return "\n".join([
        f"(c) Capacity of one worker process (2 CPUs shared with the simulated phones); pacing slips when "
        f"p99 frame jitter >= {JITTER_LIMIT_P99_MS:.0f} ms",
        "    jit = how much longer than 20 ms a phone waited for an agent frame (ms); sim lag = the "
        "simulator's own 20 ms timer lateness (ms);",
        "    v2v = caller end of speech -> first agent audio (ms); ovh = turn end -> first frame sent in the "
        "worker (ms); CPU% of one core (other = the rest of the machine meanwhile);",
        "    RSS MB = warm worker before the calls; MB/call = (peak RSS during the level - that) / calls",
        table(headers, capacity_rows([*instant, *embedded])),
        *verdicts,
    ])


QUICK_LEVELS = (1, 8, 32, 64)
FULL_LEVELS = (1, 2, 4, 8, 16, 32, 64, 96, 128)


def report(quick: bool = False, levels: Sequence[int] | None = None) -> str:
    started = time.monotonic()
    token = secrets.token_hex(16)
    counts = list(levels or (QUICK_LEVELS if quick else FULL_LEVELS))
    cap = max(counts)  # each level's worker is started with --max-calls above it
    level_s = 9.0 if quick else 14.0  # quick: the ~8 s disclosure; full: also a turn per call
    v2v_s = 24.0 if quick else 60.0

    lines = caller_audio(LOAD_LINES)
    noise = noise_bank()
    note("(a) in-process overhead ...")
    turns = asyncio.run(overhead_turns(6 if quick else 24))
    with tempfile.TemporaryDirectory(prefix="autospeak-bench-") as tmp:
        root = Path(tmp)
        note("(c) instant profile ramp ...")
        instant = ramp("instant", counts, level_s, root, token, lines, noise)
        note(f"(b) one embedded call for {v2v_s:.0f} s ...")
        single = run_level("embedded", 1, v2v_s, root, token, lines, noise)
        note("(c) embedded profile ramp ...")
        embedded = ramp("embedded", [1, 4, 8] if quick else counts, level_s, root, token, lines, noise,
                        first=single)
    head = (f"Call benchmarks ({'quick' if quick else 'full'} run, {os.cpu_count()} CPUs, "
            f"Python {sys.version.split()[0]})")
    return "\n\n".join([head, overhead_section(turns), v2v_section(single),
                        capacity_section(instant, embedded, cap),
                        f"(measured in {time.monotonic() - started:.0f} s)"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.calls.bench",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns and levels (about 2 minutes)")
    parser.add_argument("--levels", type=parse_levels, default=None,
                        help="concurrent calls per capacity level, comma-separated (e.g. 1,16,64,128)")
    args = parser.parse_args(argv)
    print(report(quick=args.quick, levels=args.levels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
