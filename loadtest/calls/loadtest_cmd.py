"""`autospeak loadtest calls`: the ramp of `loadtest.calls.ramp` from the command line, printed as a table
(progress lines on stderr while it runs) and written as report.json, report.html (inline SVG plots) and
report.png when matplotlib is installed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from loadtest.calls.figures import JITTER_LIMIT_P99_MS, fmt, note, table

HEADERS = ["calls", "up", "failed", "v2v p50", "v2v p99", "turns", "wrk v2v p50<=", "wrk v2v p99<=",
           "jit p50", "jit p99", "wrk jit p99<=",
           "gen lag p99", "wrk CPU%", "gen CPU%", "other CPU%", "wrk active", "status"]


def parse_levels(text: str) -> list[int]:
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels are whole numbers, comma-separated: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("levels must be at least 1 call each")
    return counts


def doubling(max_calls: int) -> list[int]:
    out, n = [], 1
    while n < max_calls:
        out.append(n)
        n *= 2
    return [*out, max_calls]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lt = sub.add_parser("loadtest", help="load tests against a running `autospeak up`")
    lt_sub = lt.add_subparsers(dest="target", required=True)
    calls = lt_sub.add_parser("calls",
                              help="ramp concurrent calls through a cell and plot latency and jitter")
    calls.add_argument("--data-dir", type=Path, default=Path("autospeak-data"),
                       help="the running stack's data directory (its stack.json names the cells)")
    calls.add_argument("--start", action="store_true",
                       help="start a stack of our own (instant profile, fresh data directory), stop it after")
    calls.add_argument("--region", choices=("eu", "in", "us"), default="eu", help="which cell to call")
    calls.add_argument("--levels", type=parse_levels, default=None,
                       help="concurrent calls per level, comma-separated (default 1, 2, 4 ... --max-calls)")
    calls.add_argument("--max-calls", type=int, default=128, help="the last level of the doubling ramp")
    calls.add_argument("--duration", type=float, default=20.0, help="seconds each call of a level lasts")
    calls.add_argument("--max-error-rate", type=float, default=0.05,
                       help="stop after a level where more than this share of calls failed")
    calls.add_argument("--keep-going", action="store_true",
                       help="run every level even after one slipped or failed (each is marked)")
    calls.add_argument("--metrics-port", type=int, default=0,
                       help="expose the generator's Prometheus metrics on this port while it runs")
    calls.add_argument("--out", type=Path, default=Path("loadtest-calls"), help="where the report goes")
    calls.set_defaults(func=run)


@contextlib.contextmanager
def own_stack(region: str, capacity: int) -> Iterator[Path]:
    """A stack of three cells with the instant worker profile, one worker each, in a fresh directory."""
    from cells.launcher.stack import EmbeddedStack

    data_dir = Path(tempfile.mkdtemp(prefix="autospeak-loadtest-"))
    stack = EmbeddedStack(data_dir, base_port=None, workers=1, capacity=capacity, profile="instant")
    try:
        note(f"starting a stack (instant profile, worker capacity {capacity}) in {data_dir} ...")
        stack.start()
        yield data_dir
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _bound(value: float | str | None) -> str:
    """A worker quantile read from histogram buckets: "<=" its bucket's bound, or past the last one."""
    return "past last" if value == "inf" else fmt(value, 0)  # type: ignore[arg-type]


def rows(levels: Sequence[dict[str, Any]]) -> list[list[str]]:
    out = []
    for lv in levels:
        out.append([str(lv["calls"]), str(lv["up"]), str(lv["failed"]), fmt(lv["v2v_p50_ms"], 0),
                    fmt(lv["v2v_p99_ms"], 0), str(lv["v2v_n"]), _bound(lv["worker_v2v_p50_ms"]),
                    _bound(lv["worker_v2v_p99_ms"]), fmt(lv["jitter_p50_ms"], 2),
                    fmt(lv["jitter_p99_ms"], 2), _bound(lv["worker_lateness_p99_ms"]),
                    fmt(lv["timer_lag_p99_ms"], 2), fmt(lv["worker_cpu_pct"], 0),
                    fmt(lv["generator_cpu_pct"], 0),
                    fmt(lv["other_cpu_pct"], 0), fmt(lv["worker_active_peak"], 0),
                    "ok" if not lv["stopped"] else "SLIPPED" if "pacing" in lv["stopped"] else "FAILED"])
    return out


def verdict(levels: Sequence[dict[str, Any]], workers: int) -> str:
    stopped = next((lv for lv in levels if lv["stopped"]), None)
    # Held: the levels before the first one that slipped or failed (with --keep-going, later ones ran too).
    ok = [lv["calls"] for lv in levels if stopped is None or lv["calls"] < stopped["calls"]]
    best = f"{max(ok)} concurrent calls" if ok else "no level"
    tail = (f"; slips or fails at {stopped['calls']}: {stopped['stopped']}" if stopped
            else "; the last level held")
    if stopped and (stopped["timer_lag_p99_ms"] or 0) >= JITTER_LIMIT_P99_MS:
        tail += " (the generator's own timers lagged too: part of that is this machine, not the worker)"
    return f"{workers} worker process(es) sustained {best}{tail}"


def describe(report: dict[str, Any]) -> str:
    return "\n".join([
        f"Load test: calls through {report['target']} ({report['workers']} worker(s), {report['cpus']} CPUs, "
        f"{report['duration_s']:g} s per level)",
        "  v2v = caller's last frame -> first agent frame heard (ms); turns = replies timed; jit = how much "
        "longer than 20 ms the phone waited for an agent frame (ms);",
        "  wrk ...<= = the workers' own /metrics histograms (voice to voice, frame lateness; bound of the "
        "bucket, ms);",
        "  gen lag = the generator's own 20 ms timer lateness (ms); CPU% of one core",
        table(HEADERS, rows(report["levels"])),
        f"verdict: {report['verdict']}",
    ])


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    from loadtest.calls.plot import charts, html_page, write_png

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json", out / "report.html"]
    written[0].write_text(json.dumps(report, indent=2))
    written[1].write_text(html_page(report, describe(report), JITTER_LIMIT_P99_MS))
    if report["levels"]:  # each chart also on its own, for a README or a ticket
        for name, svg in zip(("voice-to-voice", "jitter"), charts(report["levels"], JITTER_LIMIT_P99_MS),
                             strict=True):
            written.append(out / f"{name}.svg")
            written[-1].write_text(svg + "\n")
    if report["levels"] and write_png(report["levels"], out / "report.png", JITTER_LIMIT_P99_MS):
        written.append(out / "report.png")
    return written


def measure(data_dir: Path, region: str, counts: Sequence[int], duration_s: float, max_error_rate: float,
            metrics_port: int = 0, keep_going: bool = False) -> dict[str, Any]:
    from loadtest.calls import ramp
    from loadtest.calls.loadgen_metrics import LoadgenMetrics, serve
    from loadtest.calls.sim import LOAD_LINES, caller_audio, noise_bank

    target = ramp.target_from_data_dir(data_dir, region)
    if not target.workers:
        note(f"no worker of region {region} found in {data_dir / 'stack.json'}: worker CPU and /metrics "
             "will be missing")
    metrics = LoadgenMetrics()
    server = serve(metrics, metrics_port) if metrics_port else None
    if metrics_port:
        note(f"generator metrics on http://127.0.0.1:{metrics_port}/metrics")
    lines, noise = caller_audio(LOAD_LINES), noise_bank()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())

    def progress(level: ramp.LevelResult) -> None:
        note(f"{level.calls} calls: {level.up} up, {level.failed} failed, "
             f"v2v p50 {fmt(level.v2v_p50_ms, 0)} ms "
             f"p99 {fmt(level.v2v_p99_ms, 0)} ms, jitter p99 {fmt(level.jitter_p99_ms, 2)} ms, worker CPU "
             f"{fmt(level.worker_cpu_pct, 0)}%"
             + (f" ({level.carried_over} earlier calls still up at its start)" if level.carried_over else "")
             + (f"; stop: {level.stopped}" if level.stopped else ""))

    note(f"ramping {', '.join(map(str, counts))} calls of {duration_s:g} s through {target.base_url} ...")
    try:
        levels = asyncio.run(ramp.ramp(target, counts, duration_s, lines, noise, metrics, max_error_rate,
                                       progress, keep_going))
    finally:
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
    dicts = [lv.to_dict() for lv in levels]
    return {"target": f"the {region} cell at {target.base_url}", "region": region, "started_at": started_at,
            "cpus": os.cpu_count(), "duration_s": duration_s, "workers": len(target.workers),
            "levels": dicts, "verdict": verdict(dicts, len(target.workers)),
            "generator_metrics": metrics.text()}


def run(args: argparse.Namespace) -> int:
    from loadtest.calls.ramp import TargetError

    counts = args.levels or doubling(args.max_calls)
    if args.duration <= 0 or not 0 <= args.max_error_rate <= 1:
        print("autospeak loadtest calls: --duration must be positive and --max-error-rate within 0..1",
              file=sys.stderr)
        return 2
    try:
        with contextlib.ExitStack() as stack:
            data_dir = args.data_dir
            if args.start:
                data_dir = stack.enter_context(own_stack(args.region, max(counts)))
            report = measure(data_dir, args.region, counts, args.duration, args.max_error_rate,
                             args.metrics_port, args.keep_going)
    except TargetError as exc:
        print(f"autospeak loadtest calls: {exc}", file=sys.stderr)
        return 1
    print(describe(report), flush=True)
    for path in write_report(report, args.out):
        print(f"wrote {path}", flush=True)
    return 0
