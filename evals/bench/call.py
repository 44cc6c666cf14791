"""One scenario as one whole real-time call: a fresh embedded worker (its own calendar, seeded as
the scenario says), the Twilio peer over a line with the scenario's noise and loss, the scripted
caller, then the worker's call record, the calendar after the call and the agent's real audio
transcribed by the embedded Whisper recogniser. The result is a plain JSON-able outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

import media_core
from cells.contract.call_redaction import CallRedactor
from cells.simulator.booking_check import read_bookings, seed
from cells.simulator.caller import CallerLine, CallResult, ScriptedCaller
from cells.simulator.run import agent_utterances, transcribe, worker_process, write_wav
from cells.simulator.scripts import BookingScript, Seed
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine
from evals.bench.expectations import day_resolver
from evals.bench.scenario import Scenario, Turn

_TURN_KEYS = ("caller_text", "agent_text", "interrupted", "ms_after_speech_end")


class LinePeer(TwilioPeer):
    """A carrier leg that adds line noise to every caller frame and loses a share of them (a lost
    frame is never sent; its chunk and sequence numbers are skipped, as after a gap upstream)."""

    def __init__(self, base_url: str, token: str, noise_rms: float, loss: float, seed: int) -> None:
        super().__init__(base_url, token)
        self.noise_rms, self.loss = noise_rms, loss
        self.rng = np.random.default_rng(seed)
        self.lost = 0
        self.sent_at: list[float] = []  # when each frame left: a starved caller shows as gaps

    def pacing(self) -> dict[str, float]:
        """How evenly the caller's frames left (20 ms apart when the machine keeps up)."""
        gaps = np.diff(self.sent_at) * 1000 if len(self.sent_at) > 1 else np.zeros(1)
        return {"frames": len(self.sent_at), "max_gap_ms": round(float(gaps.max()), 1),
                "gaps_over_60ms": int((gaps > 60).sum())}

    async def send_frame(self, ulaw: bytes) -> None:
        self.sent_at.append(time.monotonic())
        if self.loss and self.rng.random() < self.loss:
            self._chunk += 1
            self._seq += 1
            self.lost += 1
            return
        if self.noise_rms:
            pcm = media_core.ulaw_decode(ulaw).astype(np.float64)
            pcm += self.rng.normal(0, self.noise_rms, len(pcm))
            ulaw = media_core.ulaw_encode(np.clip(pcm, -32768, 32767).astype(np.int16))
        await super().send_frame(ulaw)


def caller_lines(scenario: Scenario, run_dir: Path) -> list[CallerLine]:
    """The scenario's turns as the simulator's caller lines (silence as a WAV of digital silence)."""
    out = []
    for i, t in enumerate(scenario.turns):
        common = {"barge_in_after_ms": t.barge_in_ms, "pause_ms": t.pause_ms}
        if t.kind == "say":
            out.append(CallerLine(t.text, then=t.then, gap_ms=t.gap_ms, **common))
        elif t.kind == "wav":
            out.append(CallerLine(wav=t.wav, **common))
        elif t.kind == "dtmf":
            out.append(CallerLine(dtmf=t.text, **common))
        elif t.kind == "silence":
            path = run_dir / f"silence-{i}.wav"
            write_wav(path, np.zeros(int(t.silence_ms / 1000 * 8000), np.int16))
            out.append(CallerLine(wav=path, **common))
    return out


def seed_calendar(scenario: Scenario, run_dir: Path, today: date) -> list[str]:
    """Books the scenario's existing appointments through the simulator's helper; their ids."""
    seeds = [Seed(s.name, s.service, day_resolver(s.day), s.time, s.phone) for s in scenario.seed]
    return seed(run_dir, BookingScript([], None, seed=seeds), today)


async def _converse(url: str, token: str, scenario: Scenario, lines: list[CallerLine],
                    seed: int) -> tuple[LinePeer, CallResult]:
    c = scenario.caller
    peer = LinePeer(url, token, c.noise_rms, c.loss, seed)
    await peer.open_stream(await peer.ring())
    caller = ScriptedCaller(peer, lines, engine=EspeakEngine(), voice=c.voice, rate_wpm=c.rate,
                            max_call_s=scenario.max_call_s, seed=seed)
    last = scenario.turns[-1]
    if last.kind != "hang_up":
        return peer, await caller.run()
    # Hanging up mid-call: the caller is stopped a set time after its last line ends (its own hang-up
    # runs as it stops); what it recorded until then is the result.
    task = asyncio.create_task(caller.run())
    while not task.done():
        turns = caller.result.turns
        if len(turns) == len(lines) and turns[-1].speech_end and \
                time.monotonic() - turns[-1].speech_end >= last.hang_up_after_ms / 1000:
            task.cancel()
            break
        await asyncio.sleep(0.02)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    result = caller.result
    result.agent_audio = peer.agent_audio()
    return peer, result


def masked_lines(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """`rows` with what the caller said under `key` card-masked, in order (a report is a store too)."""
    redactor = CallRedactor(pii=False)
    return [{**row, key: redactor.caller(row[key]) if isinstance(row.get(key), str) else row.get(key)}
            for row in rows]


def said(t: Turn) -> str:
    return " ".join(filter(None, (t.text, t.then))) if t.kind == "say" else t.text


def run_call(scenario: Scenario, run_dir: Path, token: str, seed: int = 1,
             worker_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Places the call to a fresh worker (`python -m cells.worker WORKER_ARGS`: the embedded stack by
    default, another configuration with e.g. `--profile instant`) and gathers its outcome (an `error`
    field when it could not run)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    today = date.today()
    outcome: dict[str, Any] = {
        "scenario": scenario.name, "category": scenario.category, "caller": scenario.caller.label(),
        "today": today.isoformat(), "error": None,
        "script": masked_lines([{"kind": t.kind, "said": said(t)} for t in scenario.turns], "said")}
    try:
        outcome["seeded"] = seed_calendar(scenario, run_dir, today)
        outcome["bookings_before"] = read_bookings(run_dir)
        lines = caller_lines(scenario, run_dir)
        with worker_process(run_dir, token, worker_args) as (_, url):
            peer, result = asyncio.run(_converse(url, token, scenario, lines, seed))
            record = _record(run_dir, peer.call_sid)
        outcome["bookings_after"] = read_bookings(run_dir)
    except Exception as exc:  # one broken call is a failed run, not a lost suite
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        return outcome
    write_wav(run_dir / "agent.wav", result.agent_audio)
    events = record.get("events", [])
    outcome.update({
        "call_sid": peer.call_sid, "duration_s": round(result.duration_s, 2), "frames_lost": peer.lost,
        "caller_pacing": peer.pacing(),
        "disposition": record.get("disposition"), "ended_by_agent": result.ended_by_agent,
        "turns": masked_lines([{**asdict(t), "latency_ms": t.latency_ms,
                                "kind": scenario.turns[i].kind if i < len(scenario.turns) else "?"}
                               for i, t in enumerate(result.turns)], "line"),
        "worker_turns": [{k: t.get(k) for k in _TURN_KEYS} for t in record.get("turns", [])],
        "events": events,
        "agent_meant": [str(e["text"]) for e in events if e.get("kind") == "agent_said" and e.get("text")],
    })
    if not record:
        outcome["error"] = "the worker wrote no call record"
    utterances = [a for _, a in agent_utterances(result.agent_audio)]
    outcome["agent_heard"] = asyncio.run(transcribe(utterances)) if utterances else []
    return outcome


def _record(run_dir: Path, call_sid: str) -> dict[str, Any]:
    path = run_dir / "calls" / f"{call_sid}.json"
    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return json.loads(path.read_text()) if path.exists() else {}
