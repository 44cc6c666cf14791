"""`autospeak eval run`: every scenario of a suite as a whole call (N times each, K at once), judged,
with a progress line per call; then the table, the suite's figures, and the JSON and HTML reports."""

from __future__ import annotations

import json
import multiprocessing
import secrets
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.bench.call import run_call
from evals.bench.expectations import evaluate
from evals.bench.metrics import run_figures, summarise
from evals.bench.scenario import Scenario, Suite, load_suite


def judge(scenario: Scenario, outcome: dict[str, Any], mutating: tuple[str, ...], repeat: int = 0
          ) -> dict[str, Any]:
    """A run's entry in the report: the verdict with its reasons and the call's figures."""
    why = evaluate(scenario, outcome, mutating)
    figures = None if outcome.get("error") else run_figures(outcome, mutating)
    return {"scenario": scenario.name, "category": scenario.category, "repeat": repeat,
            "caller": scenario.caller.label(), "passed": not why, "why": why, "figures": figures,
            "disposition": outcome.get("disposition"), "duration_s": outcome.get("duration_s")}


def run_suite(suite_dir: Path, repeat: int = 1, parallel: int = 1, report_dir: Path | None = None,
              only: str | None = None, worker_args: tuple[str, ...] = ()) -> dict[str, Any]:
    suite = load_suite(suite_dir)
    scenarios = [s for s in suite.scenarios if only is None or only in s.name]
    if not scenarios:
        raise ValueError(f"no scenario of {suite_dir} matches {only!r}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir = report_dir or Path("data") / "eval" / f"{suite.name}-{stamp}"
    report_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(s, r) for r in range(repeat) for s in scenarios]
    token = secrets.token_hex(16)  # the embedded workers and the simulated carrier share it
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    print(f"eval: {len(jobs)} call(s) of suite {suite.name!r} ({suite.agent}), {parallel} at a time; "
          f"each takes about a minute of real time. Calls in {report_dir}", flush=True)
    # Each call in its own process: one call's recogniser run must not hold up another call's 20 ms
    # pacing in the same interpreter.
    with ProcessPoolExecutor(max(1, parallel), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_call_job, s, report_dir / "calls" / f"{_slug(s.name)}-{r}", token, r,
                               worker_args): (s, r) for s, r in jobs}
        for future in as_completed(futures):
            scenario, r = futures[future]
            try:
                outcome_path = future.result()
                outcome = json.loads(outcome_path.read_text())
            except Exception as exc:  # the pool process died: a failed run, the others go on
                outcome_path, outcome = None, {"error": f"{type(exc).__name__}: {exc}"}
            entry = judge(scenario, outcome, suite.mutating_tools, r)
            entry["outcome"] = str(outcome_path)
            runs.append(entry)
            verdict = "pass" if entry["passed"] else "FAIL: " + "; ".join(entry["why"])[:160]
            print(f"[{len(runs)}/{len(jobs)} {time.monotonic() - started:5.0f} s] {scenario.name} "
                  f"(repeat {r + 1}): {verdict}", flush=True)
            write_reports(report_dir, suite, runs, len(runs) < len(jobs), worker_args)
    return write_reports(report_dir, suite, runs, False, worker_args)


def _call_job(scenario: Scenario, run_dir: Path, token: str, r: int, worker_args: tuple[str, ...]) -> Path:
    """One call in a pool process; its outcome is written next to its audio and the path returned."""
    outcome = run_call(scenario, run_dir, token, seed=r + 1, worker_args=worker_args)
    path = run_dir / "outcome.json"
    path.write_text(json.dumps(outcome, indent=1, default=str))
    return path


def write_reports(report_dir: Path, suite: Suite, runs: list[dict[str, Any]], partial: bool,
                  worker_args: tuple[str, ...] = ()) -> dict[str, Any]:
    from evals.bench.html_report import render

    order = {s.name: i for i, s in enumerate(suite.scenarios)}
    runs = sorted(runs, key=lambda r: (order.get(r["scenario"], 0), r["repeat"]))
    report = {"suite": suite.name, "agent": suite.agent, "partial": partial, "dir": str(report_dir),
              "worker_args": list(worker_args),
              "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "summary": summarise(runs), "runs": runs}
    tmp = report_dir / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(report_dir / "report.json")
    (report_dir / "report.html").write_text(render(report))
    return report


def table(report: dict[str, Any]) -> str:
    """The verdict table and the suite's figures as text."""
    rows = [("scenario", "result", "why")]
    for r in report["runs"]:
        name = r["scenario"] + (f" #{r['repeat'] + 1}" if r["repeat"] else "")
        rows.append((name, "pass" if r["passed"] else "FAIL", "; ".join(r["why"])[:140]))
    w0 = max(len(r[0]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<7}{c}" for a, b, c in rows]
    s = report["summary"]
    config = " ".join(report.get("worker_args", [])) or "the embedded stack"
    lines += ["", f"worker under test: {config}",
              f"task success: {s['passed']}/{s['runs']} ({_pc(s['task_success'])})",
              f"confirmation discipline: {s['confirmation_violations']} violation(s) in "
              f"{s['mutating_calls']} mutating tool call(s)",
              f"unbacked claims the call loop replaced: {s.get('claims_replaced', 0)}",
              f"caller frames sent more than 60 ms apart (a starved simulator; figures suffer): "
              f"{s.get('caller_gaps_over_60ms', 0)}",
              f"STT WER on the caller's turns: {_pc(s['caller_wer'])}",
              f"agent intelligibility (round-trip WER of its TTS through Whisper): {_pc(s['agent_wer'])}",
              "latency per stage (ms)  p50 / p95 (n):"]
    for stage, v in s["latency_ms"].items():
        lines.append(f"  {stage:<15} {v['p50']} / {v['p95']} ({v['n']})")
    lines.append("pass rate per category: " + ", ".join(
        f"{k} {v['passed']}/{v['runs']}" for k, v in s["categories"].items()))
    return "\n".join(lines)


def _pc(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:80]


def main(suite_dir: Path, repeat: int, parallel: int, report_dir: Path | None, only: str | None,
         worker_args: tuple[str, ...] = ()) -> int:
    try:
        report = run_suite(suite_dir, repeat, parallel, report_dir, only, worker_args)
    except ValueError as exc:  # ScenarioError included: a bad file is named, nothing runs
        print(f"autospeak eval run: {exc}", file=sys.stderr)
        return 2
    print("\n" + table(report))
    print(f"\nReports: {report['dir']}/report.json and report.html")
    return 0 if report["summary"]["passed"] == report["summary"]["runs"] else 1
