"""`autospeak call`: start an embedded worker, call it as Twilio would with a scripted caller,
then print the conversation with per-turn latency and write a JSON report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import media_core
from cells.contract.call_redaction import CallRedactor
from cells.launcher.ports import free_port
from cells.providers.base import FrameFeed, ProviderError
from cells.simulator.booking_check import check, read_bookings, seed
from cells.simulator.caller import CallResult, ScriptedCaller
from cells.simulator.scripts import BOOKING_SCRIPTS, SCRIPTS
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine, VoiceNotFoundError

DEFAULT_VOICE = "en-us+f2"


@contextmanager
def worker_process(data_dir: Path, auth_token: str, args: Sequence[str] = ()
                   ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A worker process (`python -m cells.worker ARGS`) on a free loopback port, healthy before it
    is yielded as (process, base URL); stopped afterwards."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(data_dir / "worker.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "cells.worker", "--port", str(port), "--data-dir",
                             str(data_dir), *args], env={**os.environ, "TWILIO_AUTH_TOKEN": auth_token},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {data_dir / 'worker.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not become healthy within 60 s")
            time.sleep(0.1)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# The demo clinic's knowledge files (cells/launcher/demo_knowledge; a path, not an import of the launcher).
DEMO_KNOWLEDGE = Path(__file__).resolve().parents[1] / "launcher" / "demo_knowledge"


def demo_knowledge_args(agent_kind: str = "clinic") -> list[str]:
    """`--knowledge FILE` for each of a demo agent's knowledge files."""
    files = sorted(p for p in DEMO_KNOWLEDGE.glob(f"{agent_kind}*") if p.suffix in (".md", ".csv", ".html"))
    return [arg for f in files for arg in ("--knowledge", str(f))]


@contextmanager
def embedded_worker(data_dir: Path, auth_token: str, args: Sequence[str] = ()) -> Iterator[str]:
    """The embedded worker, answering questions from the demo clinic's knowledge; yields its base URL."""
    with worker_process(data_dir, auth_token, [*demo_knowledge_args(), *args]) as (_, url):
        yield url


def agent_utterances(pcm8k: np.ndarray, min_gap_s: float = 0.5) -> list[tuple[float, np.ndarray]]:
    """Splits the recorded agent audio on silences: (start s, audio) per utterance."""
    frame = 160
    n = len(pcm8k) // frame
    loud = np.abs(pcm8k[: n * frame].reshape(n, frame).astype(np.int32)).max(axis=1) > 300
    out: list[tuple[float, np.ndarray]] = []
    start, quiet = None, 0
    for i, on in enumerate(loud):
        if on:
            start = i if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet * 0.02 >= min_gap_s:
                out.append((start * 0.02, pcm8k[start * frame:(i - quiet + 1) * frame]))
                start, quiet = None, 0
    if start is not None:
        out.append((start * 0.02, pcm8k[start * frame:]))
    return out


async def transcribe(utterances: list[np.ndarray]) -> list[str]:
    """What a listener's recogniser makes of the agent's audio (Whisper, no domain, no hint)."""
    from cells.providers.stt.whisper_stt import WhisperStt

    stt = WhisperStt()
    texts: list[str] = []
    for audio in utterances:
        feed = FrameFeed()
        r = media_core.Resampler(8000, 16000)
        feed.push(np.concatenate([r.process(audio), r.flush()]))
        feed.close()
        try:
            finals = [t.text async for t in stt.stream(feed) if t.is_final]
        except ProviderError as exc:  # the report still stands without this one transcription
            finals = [f"(not transcribed: {exc})"]
        texts.append(" ".join(finals).strip())
    return texts


def write_wav(path: Path, pcm: np.ndarray, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())


async def run_call(base_url: str, auth_token: str, script: str, data_dir: Path,
                   voice: str = DEFAULT_VOICE, rate_wpm: int = 170) -> dict[str, Any]:
    peer = TwilioPeer(base_url, auth_token)
    target = await peer.ring()
    await peer.open_stream(target)
    caller = ScriptedCaller(peer, SCRIPTS[script], engine=EspeakEngine(), voice=voice, rate_wpm=rate_wpm)
    result = await caller.run()
    return build_report(peer, result, data_dir, script)


def build_report(peer: TwilioPeer, result: CallResult, data_dir: Path, script: str) -> dict[str, Any]:
    write_wav(data_dir / f"{peer.call_sid}-agent.wav", result.agent_audio)
    record_path = data_dir / "calls" / f"{peer.call_sid}.json"
    deadline = time.monotonic() + 15
    while not record_path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = json.loads(record_path.read_text()) if record_path.exists() else {}
    latencies = [t.latency_ms for t in result.turns if t.latency_ms is not None and not t.barge_in]
    return {
        "script": script, "call_sid": peer.call_sid, "duration_s": round(result.duration_s, 2),
        "ended_by_agent": result.ended_by_agent, "clears": result.clears,
        "marks_played": len(result.marks_played), "marks_cleared": len(result.marks_cleared),
        "turns": _masked([{**asdict(t), "latency_ms": t.latency_ms} for t in result.turns]),
        "latency_ms": {"p50": _pct(latencies, 50), "p95": _pct(latencies, 95), "n": len(latencies)},
        "worker": worker,
    }


def _masked(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The caller's lines card-masked, in order: the report and the printout keep no card either."""
    redactor = CallRedactor(pii=False)
    return [{**t, "line": redactor.caller(t["line"])} for t in turns]


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def print_report(report: dict[str, Any], heard: list[str]) -> None:
    worker = report.get("worker", {})
    print(f"Call {report['call_sid']} ({report['script']}), {report['duration_s']} s, "
          f"disposition: {worker.get('disposition', '?')}\n")
    agent_lines = [m["content"] for m in worker.get("history", [])
                   if m["role"] == "assistant" and m["content"]]
    caller_turns = report["turns"]
    for i in range(max(len(agent_lines), len(caller_turns))):
        if i < len(agent_lines):
            print(f"  agent : {agent_lines[i]}")
            if i < len(heard):
                print(f"          (caller's recogniser heard: {heard[i] or '-'})")
        if i < len(caller_turns):
            t = caller_turns[i]
            lat = f"{t['latency_ms']:.0f} ms" if t["latency_ms"] is not None else "-"
            tag = " [barge-in]" if t["barge_in"] else ""
            print(f"  caller: {t['line']}{tag}   -> agent audio after {lat}")
    stt = [t.get("caller_text", "") for t in worker.get("turns", [])]
    if stt:
        print("\n  what the agent's recogniser heard from the caller:")
        for text in stt:
            print(f"    - {text}")
    lat = report["latency_ms"]
    print(f"\nVoice-to-voice latency (caller's end of speech -> first agent audio): "
          f"p50 {lat['p50']} ms, p95 {lat['p95']} ms over {lat['n']} turns")


def main(script: str = "booking", data_dir: Path | None = None, base_url: str | None = None,
         voice: str = DEFAULT_VOICE, rate_wpm: int = 170) -> int:
    if script not in SCRIPTS:
        raise SystemExit(f"unknown script {script!r}; choose from {', '.join(SCRIPTS)}")
    try:  # a bad voice or rate fails here, before a worker starts
        EspeakEngine().synthesize("check", voice=voice, rate_wpm=rate_wpm)
    except (VoiceNotFoundError, ValueError) as exc:
        raise SystemExit(f"--voice/--rate: {exc}") from None
    data_dir = data_dir or Path("data") / "calls-demo"
    data_dir.mkdir(parents=True, exist_ok=True)
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    booking = BOOKING_SCRIPTS.get(script)
    today = date.today()
    seeded = seed(data_dir, booking, today) if booking and not base_url else []
    before = read_bookings(data_dir)
    if base_url:
        if not token:
            raise SystemExit("calling a running worker needs its TWILIO_AUTH_TOKEN to sign as Twilio does")
        report = asyncio.run(run_call(base_url, token, script, data_dir, voice, rate_wpm))
    else:
        token = token or secrets.token_hex(16)  # the embedded worker and the simulator share it
        print(f"Starting an embedded worker (data in {data_dir}) ...", flush=True)
        with embedded_worker(data_dir, token) as url:
            print(f"Calling {url} as Twilio would; the caller ({voice}, {rate_wpm} wpm) speaks in real "
                  "time ...", flush=True)
            report = asyncio.run(run_call(url, token, script, data_dir, voice, rate_wpm))
    report["voice"], report["rate_wpm"] = voice, rate_wpm
    if booking and not base_url:  # a remote worker's calendar is not ours to read
        report["booking_problems"] = check(booking, before, read_bookings(data_dir),
                                           report["worker"].get("disposition"), today, seeded)
    with wave.open(str(data_dir / f"{report['call_sid']}-agent.wav"), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    heard = asyncio.run(transcribe([a for _, a in agent_utterances(pcm)]))
    report["agent_heard"] = heard
    out = data_dir / f"{report['call_sid']}-report.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    print_report(report, heard)
    if "booking_problems" in report:
        problems = report["booking_problems"]
        print("\nCalendar: " + ("as the caller meant" if not problems else "WRONG: " + "; ".join(problems)))
    print(f"\nReport: {out}\nAgent audio: {data_dir / (report['call_sid'] + '-agent.wav')}")
    return 0
