"""Whole booking calls by callers the clinic was not tuned on, one at a time in real time.

Each caller of cells/simulator/other_callers.py (its own phrasing, eSpeak NG voice and rate) calls a fresh
embedded worker through the Twilio-protocol peer; the calendar afterwards is checked for exactly the
booking the caller meant. Prints one row per call: script, voice, outcome, what the agent heard.

    python -m evals.calls.bench                 # every caller (~1 min each)
    python -m evals.calls.bench --only clipped,name-first --json out.json
    python -m evals.calls.bench --voice en-us --rate 170 --keep calls/   # every caller in one voice
    python -m evals.calls.bench --set more      # the second set (cells/simulator/more_callers.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import textwrap
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from cells.simulator.booking_check import check, read_bookings, seed
from cells.simulator.caller import ScriptedCaller
from cells.simulator.more_callers import MORE_CALLERS
from cells.simulator.other_callers import OTHER_CALLERS, OtherCaller
from cells.simulator.run import embedded_worker
from cells.simulator.scripts import BookingScript
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine


@dataclass
class CallOutcome:
    script: str
    voice: str
    rate_wpm: int
    problems: list[str]
    heard: list[str] = field(default_factory=list)
    disposition: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def booking_call(data: Path, booking: BookingScript, voice: str, rate_wpm: int,
                 max_call_s: float = 120) -> tuple[list[str], dict[str, Any]]:
    """Calls a fresh worker with the script; (what is wrong with the calendar, the worker's call record)."""
    token = secrets.token_hex(16)
    today = date.today()
    seeded = seed(data, booking, today)
    before = read_bookings(data)

    async def run(url: str) -> str:
        peer = TwilioPeer(url, token)
        await peer.open_stream(await peer.ring())
        await ScriptedCaller(peer, booking.lines, engine=EspeakEngine(), voice=voice, rate_wpm=rate_wpm,
                             max_call_s=max_call_s).run()
        return peer.call_sid

    with embedded_worker(data, token) as url:
        sid = asyncio.run(run(url))
    path = data / "calls" / f"{sid}.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    return check(booking, before, read_bookings(data), record.get("disposition"), today, seeded), record


SETS: dict[str, dict[str, OtherCaller]] = {"other": OTHER_CALLERS, "more": MORE_CALLERS}


def chosen(callers: dict[str, OtherCaller], only: str | None) -> list[str]:
    """The callers named in `--only` (comma-separated; all of the set without it), checked."""
    names = only.split(",") if only else list(callers)
    unknown = [n for n in names if n not in callers]
    if unknown:
        raise SystemExit(f"unknown caller(s) {unknown}; choose from {', '.join(callers)}")
    return names


def run_caller(name: str, workdir: Path, voice: str | None = None,
               rate_wpm: int | None = None, callers: dict[str, OtherCaller] = OTHER_CALLERS) -> CallOutcome:
    """One caller's call (in its own voice and rate unless others are given), its data in workdir/name."""
    caller = callers[name]
    voice, rate_wpm = voice or caller.voice, rate_wpm or caller.rate_wpm
    problems, record = booking_call(workdir / name, caller.script, voice, rate_wpm)
    heard = [t.get("caller_text", "") for t in record.get("turns", [])]
    return CallOutcome(name, voice, rate_wpm, problems, heard, record.get("disposition"))


def print_table(outcomes: list[CallOutcome]) -> None:
    print(f"\n{'script':<26} {'voice':<16} {'wpm':>4}  outcome")
    for o in outcomes:
        print(f"{o.script:<26} {o.voice:<16} {o.rate_wpm:>4}  "
              + ("booked as meant" if o.ok else "WRONG: " + "; ".join(o.problems)))
        for i, text in enumerate(o.heard, 1):
            print(textwrap.fill(f"{i}. {text}", 110, initial_indent=" " * 6, subsequent_indent=" " * 9))
    good = sum(o.ok for o in outcomes)
    print(f"\nWhole booking calls as the caller meant: {good} of {len(outcomes)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.calls.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=sorted(SETS), default="other",
                    help="which callers: the first seven (other, default) or the second set (more)")
    ap.add_argument("--only", help="comma-separated caller names (default: all of the set)")
    ap.add_argument("--json", type=Path, help="also write the outcomes as JSON here")
    ap.add_argument("--voice", help="every caller in this eSpeak NG voice instead of its own")
    ap.add_argument("--rate", type=int, help="every caller at this rate (words per minute)")
    ap.add_argument("--keep", type=Path, help="keep each call's worker data (call records, calendar) here")
    args = ap.parse_args(argv)
    callers = SETS[args.set]
    names = chosen(callers, args.only)
    if args.voice or args.rate:
        try:  # a bad voice or rate fails here, before any worker starts
            EspeakEngine().synthesize("check", voice=args.voice or "en-us", rate_wpm=args.rate or 170)
        except ValueError as exc:
            raise SystemExit(f"--voice/--rate: {exc}") from None
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="calls-bench-") as tmp:
        workdir = args.keep or Path(tmp)
        for name in names:  # one at a time: calls are real time and the worker needs the cores
            outcome = run_caller(name, workdir, args.voice, args.rate, callers)
            print(f"{name}: {'ok' if outcome.ok else 'WRONG'}", flush=True)
            outcomes.append(outcome)
    print_table(outcomes)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
