"""Figures of a suite run: task success, confirmation discipline, per-stage latency, the recogniser's
word error rate on the caller's speech, and the agent's intelligibility (its TTS through a recogniser
against the words it meant)."""

from __future__ import annotations

from typing import Any

import numpy as np

from evals.bench.confirmation import violations
from evals.stt.wer import WerCounts, wer_counts

# Each stage as the time it adds after the one before (worker clock), then what the caller felt.
STAGES = ("endpoint", "stt", "llm", "tts", "send", "voice_to_voice")
_MARKS = ("turn_end", "stt_final", "first_token", "first_tts_audio", "first_frame_sent")


def stage_latencies(worker_turns: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Milliseconds each stage took, per turn, from the worker's record (turns it answered in full)."""
    out: dict[str, list[float]] = {s: [] for s in STAGES[:-1]}
    for t in worker_turns:
        ms = t.get("ms_after_speech_end") or {}
        if t.get("interrupted") or any(ms.get(m) is None for m in _MARKS):
            continue
        prev = 0.0
        for stage, mark in zip(STAGES[:-1], _MARKS, strict=True):
            out[stage].append(round(float(ms[mark]) - prev, 1))
            prev = float(ms[mark])
    return out


def caller_wer(outcome: dict[str, Any]) -> WerCounts:
    """What the agent's recogniser made of the caller's spoken lines (keypad turns left out)."""
    ref = " ".join(s["said"] for s in outcome.get("script", []) if s["kind"] == "say")
    hyp = " ".join(str(e.get("text", "")) for e in outcome.get("events", [])
                   if e.get("kind") == "transcript" and not str(e.get("text", "")).startswith("keypad"))
    return wer_counts(ref, hyp) if ref else WerCounts(0, 0)


def agent_wer(outcome: dict[str, Any]) -> WerCounts:
    """The agent's words as meant against a recogniser's transcription of its real audio."""
    meant = " ".join(outcome.get("agent_meant", []))
    return wer_counts(meant, " ".join(outcome.get("agent_heard", []))) if meant else WerCounts(0, 0)


def run_figures(outcome: dict[str, Any], mutating: tuple[str, ...]) -> dict[str, Any]:
    """The figures of one call, kept in its JSON so that a report can be recomputed from its runs."""
    lat = stage_latencies(outcome.get("worker_turns", []))
    lat["voice_to_voice"] = [t["latency_ms"] for t in outcome.get("turns", [])
                             if t.get("latency_ms") is not None and not t.get("barge_in")
                             and t.get("kind") != "silence"]
    cw, aw = caller_wer(outcome), agent_wer(outcome)
    return {"latency_ms": lat, "confirmation_violations": violations(outcome.get("events", []), mutating),
            "mutating_calls": sum(1 for e in outcome.get("events", [])
                                  if e.get("kind") == "tool_call" and e.get("name") in mutating),
            "caller_wer": [cw.errors, cw.reference_words], "agent_wer": [aw.errors, aw.reference_words],
            "claims_replaced": sum(1 for e in outcome.get("events", []) if e.get("kind") == "claim_replaced"),
            "caller_gaps_over_60ms": (outcome.get("caller_pacing") or {}).get("gaps_over_60ms", 0)}


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Suite-level figures over every run (a run: scenario, category, passed, figures)."""
    lat: dict[str, list[float]] = {s: [] for s in STAGES}
    cw = aw = WerCounts(0, 0)
    viol = mut = claims = gaps = 0
    cats: dict[str, list[int]] = {}
    for r in runs:
        f = r.get("figures") or {}
        for s in STAGES:
            lat[s] += f.get("latency_ms", {}).get(s, [])
        cw += WerCounts(*f.get("caller_wer", [0, 0]))
        aw += WerCounts(*f.get("agent_wer", [0, 0]))
        viol += len(f.get("confirmation_violations", []))
        mut += f.get("mutating_calls", 0)
        claims += f.get("claims_replaced", 0)
        gaps += f.get("caller_gaps_over_60ms", 0)
        c = cats.setdefault(r["category"], [0, 0])
        c[0] += int(r["passed"])
        c[1] += 1
    passed = sum(int(r["passed"]) for r in runs)
    return {
        "runs": len(runs), "passed": passed, "task_success": round(passed / len(runs), 4) if runs else None,
        "confirmation_violations": viol, "mutating_calls": mut, "claims_replaced": claims,
        "caller_gaps_over_60ms": gaps,
        "latency_ms": {s: {"p50": pct(v, 50), "p95": pct(v, 95), "n": len(v)} for s, v in lat.items()},
        "caller_wer": round(cw.wer, 4) if cw.reference_words else None,
        "agent_wer": round(aw.wer, 4) if aw.reference_words else None,
        "categories": {k: {"passed": v[0], "runs": v[1]} for k, v in sorted(cats.items())},
    }
