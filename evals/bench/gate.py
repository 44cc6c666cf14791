"""`autospeak eval gate`: a candidate's report against the baseline's on the same suite. It refuses
(exit 1) a regression beyond the margins in task success, confirmation violations, p95 latency per
stage or word error rate, and names the scenarios that passed before and fail now. The control API
runs the same `compare` on reports recorded with POST .../agents/{id}/eval-runs
(control/api/routes/agent_versions.py)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Margins:
    task_success: float = 0.05  # the success rate may drop this much (absolute)
    violations: int = 0  # confirmation violations may grow by this many
    p95_rel: float = 0.20  # a stage's p95 may grow by this share ...
    p95_ms: float = 150.0  # ... or by this many ms, whichever is larger
    caller_wer: float = 0.03  # absolute
    agent_wer: float = 0.03  # absolute
    # p95 is gated on what the caller feels (voice_to_voice); 1 gates every stage too (a faster total
    # can hide one stage getting slower, and a slower stage can be bought by a faster one).
    all_stages: int = 0


def parse_margins(text: str | None) -> Margins:
    """ "task_success=0.1,p95_ms=200" -> Margins; a clear error for an unknown key or a bad number."""
    m = Margins()
    if not text:
        return m
    known = {f.name: f.type for f in fields(Margins)}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in known:
            raise ValueError(f"--margins: unknown {key!r}; known: {', '.join(known)}")
        try:
            m = replace(m, **{key: int(value) if key in ("violations", "all_stages") else float(value)})
        except ValueError:
            raise ValueError(f"--margins: {key} needs a number, got {value!r}") from None
    return m


Row = tuple[str, str, str, str]


def compare(base: dict[str, Any], cand: dict[str, Any], m: Margins) -> tuple[list[Row], list[str]]:
    """(rows of measure, baseline, candidate, verdict; the reasons it is refused)."""
    if base.get("suite") != cand.get("suite"):
        raise ValueError(f"different suites: {base.get('suite')!r} vs {cand.get('suite')!r}")
    bs, cs = base["summary"], cand["summary"]
    rows: list[Row] = []
    refused: list[str] = []

    def row(name: str, b: Any, c: Any, worse: bool, gated: bool = True, pc: bool = False) -> None:
        shown = (_pc(b), _pc(c)) if pc else (_s(b), _s(c))
        rows.append((name, *shown, ("REGRESSION" if gated else "slower (not gated)") if worse else "ok"))
        if worse and gated:
            refused.append(f"{name}: {shown[0]} -> {shown[1]}")

    bt, ct = bs.get("task_success") or 0.0, cs.get("task_success") or 0.0
    row("task success", bt, ct, ct < bt - m.task_success, pc=True)
    bv, cv = bs["confirmation_violations"], cs["confirmation_violations"]
    row("confirmation violations", bv, cv, cv > bv + m.violations)
    for key, margin in (("caller_wer", m.caller_wer), ("agent_wer", m.agent_wer)):
        b, c = bs.get(key), cs.get(key)
        row(key.replace("_", " "), b, c, b is not None and c is not None and c > b + margin, pc=True)
    for stage, bl in bs["latency_ms"].items():
        b, c = bl.get("p95"), cs["latency_ms"].get(stage, {}).get("p95")
        worse = b is not None and c is not None and c > b + max(m.p95_ms, m.p95_rel * b)
        row(f"p95 {stage} ms", b, c, worse, gated=stage == "voice_to_voice" or bool(m.all_stages))
    before = {r["scenario"] for r in base["runs"] if r["passed"]}
    now_failing = sorted({r["scenario"] for r in cand["runs"] if not r["passed"] and r["scenario"] in before})
    if now_failing and refused:
        refused.append("passed before, fail now: " + ", ".join(now_failing))
    elif now_failing:
        rows.append(("scenarios failing now", "", ", ".join(now_failing), "within margins"))
    return rows, refused


def _pc(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _s(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "-" if x is None else str(x)


def main(baseline: Path, candidate: Path, margins: str | None) -> int:
    try:
        base, cand = (json.loads(p.read_text()) for p in (baseline, candidate))
        rows, refused = compare(base, cand, parse_margins(margins))
    except (OSError, ValueError, KeyError) as exc:
        print(f"autospeak eval gate: {exc}", file=sys.stderr)
        return 2
    shown = [("measure", "baseline", "candidate", "verdict"), *rows]
    widths = [max(len(r[i]) for r in shown) for i in range(4)]
    for r in shown:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=True)))
    if cand.get("partial") or base.get("partial"):
        print("\nnote: a partial report (the run did not finish) is compared as it stands")
    if refused:
        print("\nREFUSED: the candidate regresses beyond the margins:\n  " + "\n  ".join(refused))
        return 1
    print("\npassed: no regression beyond the margins")
    return 0
