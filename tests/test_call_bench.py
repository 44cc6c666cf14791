"""Smoke test of `autospeak bench calls`: the smallest pieces of each section run and print their rows
(figures are measured, so only their presence is checked, never their size)."""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

from loadtest.calls import bench


def test_two_instant_turns_give_an_overhead_table() -> None:
    turns = asyncio.run(bench.overhead_turns(2))
    assert len(turns) == 2
    text = bench.overhead_section(turns)
    for _, _, label in bench.OVERHEAD_STAGES:
        row = next(line for line in text.splitlines() if line.startswith(label))
        assert len(re.findall(r"\d+\.\d+", row)) == 3, row  # p50, p95, max
    assert "endpointing" in text and "goal (20 ms)" in text


def test_one_call_against_an_instant_worker_is_measured(tmp_path: Path) -> None:
    lines = bench.caller_audio(["Yes, please."])
    level = bench.run_level("instant", 1, 3.0, tmp_path, secrets.token_hex(8), lines, bench.noise_bank())
    assert level.failed == 0
    assert level.jitter_ms(), "the disclosure's frames reached the phone"
    assert level.rss_base_kb > 0 and level.records
    text = bench.capacity_section([level], [], cap=32)
    row = next(line for line in text.splitlines() if line.startswith("instant "))
    # The pacing cell is "ok", "SLIPPED" or, when the simulator's own timers lagged, "SLIPPED (sim lag)".
    assert row.split()[1] == "1" and re.search(r"(ok|SLIPPED( \(sim lag\))?)$", row), row
