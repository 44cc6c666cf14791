"""The cell benchmark's pure parts: percentiles, tables and the report layout (no stack is started)."""

from __future__ import annotations

import pytest

from loadtest.cells.bench import ResumeSample, SetupResults, render, stats_row, summarize, table


def test_summarize_gives_percentiles_and_max() -> None:
    s = summarize([float(v) for v in range(1, 101)])
    assert s.n == 100 and s.max == 100.0
    assert s.p50 == pytest.approx(50.5) and s.p95 == pytest.approx(95.05) and s.p99 == pytest.approx(99.01)
    empty = summarize([])
    assert empty.n == 0 and empty.p50 is None and empty.max is None


def test_stats_row_and_table_align_columns() -> None:
    assert stats_row("eu", [10.0, 20.0]) == ["eu", "2", "15.0", "19.5", "19.9", "20.0"]
    assert stats_row("in", []) == ["in", "0", "-", "-", "-", "-"]
    text = table(["region", "p50 ms"], [["eu", "1.0"], ["us", "123.4"]])
    lines = text.splitlines()
    assert lines[0] == "region  p50 ms" and set(lines[1]) == {"-"}
    assert lines[2] == "eu         1.0" and lines[3] == "us       123.4"


def test_render_has_the_three_sections() -> None:
    setup = SetupResults(sequential={"eu": [12.0, 14.0], "in": [20.0], "us": []}, concurrent=[30.0, 40.0])
    rows = [("eu", "call_created", 5.0), ("eu", "call_ended", 9.0), ("in", "call_started", 7.0)]
    samples = [ResumeSample("eu-w1", "eu-w2", 10.0, 30.0, 35.0, 40.0), ResumeSample("failed")]
    text = render(setup, rows, samples, n=2, bursts=1)
    assert "(a) call setup" in text and "eu 8 concurrent" in text
    assert "(b) event pipeline lag" in text and "call_created" in text
    assert "(c) resume gap" in text and "eu-w1" in text and "median" in text
