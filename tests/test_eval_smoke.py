"""`autospeak eval run` on the reception smoke suite: one whole real-time call (about half a minute) on
the embedded stack, judged on the calendar and on what the caller's recogniser heard. The smoke suite
holds only a call whose wording tiny.en hears the same however the turn is cut; the golden suite holds
the rest (a transfer request among them), where a misheard turn is a finding, not a flaky test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_smoke_suite_runs_as_whole_calls_and_passes(tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "cells.cli", "eval", "run", str(ROOT / "evals/scenarios/reception/smoke"),
         "--report", str(report_dir)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # What the user reads: a progress line per call, the verdict table, the figures.
    assert "[1/1" in out
    assert "task success: 1/1" in out and "confirmation discipline: 0 violation(s)" in out
    report = json.loads((report_dir / "report.json").read_text())
    assert [r["passed"] for r in report["runs"]] == [True] and not report["partial"]
    by_name = {r["scenario"]: r for r in report["runs"]}
    assert by_name["opening-hours"]["disposition"] == "completed"
    # Real figures from the calls: the agent answered every spoken turn, the recogniser heard words.
    assert report["summary"]["latency_ms"]["voice_to_voice"]["n"] >= 2
    assert report["summary"]["caller_wer"] is not None and report["summary"]["agent_wer"] is not None
    outcome = json.loads(Path(by_name["opening-hours"]["outcome"]).read_text())
    assert any("Sunday" in text for text in outcome["agent_heard"])
    assert (report_dir / "report.html").read_text().count("<svg") == 2
