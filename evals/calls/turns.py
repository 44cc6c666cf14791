"""The unscripted callers' turns heard one at a time, offline: what the recogniser makes of each line, with
the hint the agent gives at that point, and whether it carries the slots the line carries.

Each caller of cells/simulator/other_callers.py (or more_callers.py) is played through the reception policy
as text (every earlier turn heard perfectly), so each turn is decoded with the hint a call that went well
so far would send. Each line is synthesised in the caller's eSpeak NG voice, taken through the phone path
(8 kHz mu-law, as cells/simulator/caller.py sends it) and decoded by the embedded Whisper recogniser with the
clinic's domain. A turn is right when the dialogue's reading of it (`understand` in
cells/agents/reception/intents.py) has
the same service, date, time, name, phone and yes/no as the reading of the line's text. Seconds, not the
minutes of `python -m evals.calls.bench`, and no real-time pacing; it does not replace the whole calls.

    python -m evals.calls.turns                      # every caller of the first set
    python -m evals.calls.turns --set more --only a,b -v
    python -m evals.calls.turns --stt 'whisper:hold_words=true'   # word answers held to their slot
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

import media_core
from cells.agents.reception.agent import ReceptionAgent
from cells.agents.reception.clinic import default_clinic
from cells.agents.reception.intents import understand
from cells.simulator.caller import line_audio
from cells.simulator.other_callers import OtherCaller
from cells.speech.espeak import EspeakEngine
from evals.calls.bench import SETS, chosen
from evals.dialogue.harness import NOW, FakeCall

SLOTS = ("service", "date", "time", "name", "phone", "answer")


@dataclass
class Turn:
    caller: str
    hint: str | None
    said: str
    heard: str
    missed: list[str]  # slots of the said line that the heard text reads differently


def slots(text: str, expecting: str | None) -> dict[str, Any]:
    clinic = default_clinic()
    u = understand(text, NOW.date(), clinic, expecting=expecting)
    got = {k: getattr(u, k) for k in SLOTS}
    if got["time"] is not None:
        got["time"] = (got["time"].at, got["time"].preference)
    if got["name"] is not None:
        got["name"] = got["name"].lower().split()[-1]
    return got


def phone_pcm16(mulaw: bytes) -> np.ndarray:
    """The caller's line as the worker hands it to the recogniser: mu-law -> 16-bit -> 16 kHz."""
    pcm8 = media_core.ulaw_decode(mulaw)
    r = media_core.Resampler(8000, 16000)
    return np.concatenate([r.process(pcm8), r.flush()]).astype(np.int16)


def domain() -> Any:
    agent = ReceptionAgent()
    return agent.domain


def run(callers: dict[str, OtherCaller], names: list[str], stt_spec: str) -> list[Turn]:
    stt = _provider(stt_spec)
    engine = EspeakEngine()
    turns = []
    for caller_name in names:
        caller = callers[caller_name]
        call = FakeCall()
        for line in caller.script.lines:
            state = call.policy.state(call.messages)
            hint = call.policy.expectation(call.messages)
            text = " ".join(filter(None, (line.text, line.then)))
            pcm = phone_pcm16(line_audio(line, engine, caller.voice, caller.rate_wpm))
            heard = asyncio.run(stt.transcribe(pcm, hint))
            expecting = state.expecting if state.expecting in ("phone", "name", "date", "time") else None
            want, got = slots(text, expecting), slots(heard, expecting)
            missed = [k for k in SLOTS if want[k] is not None and got[k] != want[k]]
            turns.append(Turn(caller_name, hint, text, heard, missed))
            call.say(text)
    return turns


def _provider(spec: str) -> Any:
    from cells.providers.stt.whisper_stt import WhisperStt

    name, _, opts = spec.partition(":")
    if name != "whisper":
        raise SystemExit(f"--stt: only whisper[:key=value;...] is measured here, got {spec!r}")
    options: dict[str, Any] = {}
    for part in filter(None, opts.split(";")):
        key, _, value = part.partition("=")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return WhisperStt(domain(), **options)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.calls.turns", description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=sorted(SETS), default="other")
    ap.add_argument("--only", help="comma-separated caller names")
    ap.add_argument("--stt", default="whisper", help="whisper[:key=value;...] (values read as JSON)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every turn, not only the missed")
    args = ap.parse_args(argv)
    callers = SETS[args.set]
    names = chosen(callers, args.only)
    turns = run(callers, names, args.stt)
    for t in turns:
        if t.missed or args.verbose:
            mark = "MISSED " + ",".join(t.missed) if t.missed else "ok"
            print(f"{t.caller:<24} [{t.hint or '-':<7}] {mark}\n    said:  {t.said}\n    heard: {t.heard}")
    with_slots = [t for t in turns if any(v is not None for v in slots(t.said, None).values())]
    right = sum(not t.missed for t in turns)
    print(f"\nturns heard with every slot right: {right} of {len(turns)}; "
          f"missed slots: {sum(len(t.missed) for t in turns)}; turns with slots: {len(with_slots)}",
          file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
