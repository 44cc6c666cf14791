"""What the simulated phones cost, old against new, on the same machine in the same minutes.

Old: an HTTP client made for every ring and permessage-deflate negotiated on every media WebSocket (what
the simulator did before; Twilio does neither). New: one shared client, no compression. Each round runs
one instant-profile level of each kind against a fresh worker process, alternating, so that the load of
a shared machine falls on both alike; the ratios within a round are the figure to read.

Run: python -m loadtest.calls.phones_ab [--calls 16] [--rounds 2] [--seconds 9]
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from pathlib import Path

from loadtest.calls import bench
from loadtest.calls.figures import fmt, note, pct, table
from loadtest.calls.sim import LOAD_LINES, caller_audio, noise_bank


def _row(round_no: int, level: bench.Level) -> list[str]:
    per_call_mb = (level.rss_peak_kb - level.rss_base_kb) / 1024 / level.calls
    return [str(round_no), "old" if level.old_phones else "new", str(level.calls),
            f"{level.sim_cpu_pct:.1f}", f"{level.sim_cpu_pct / level.calls:.2f}",
            f"{level.worker_cpu_pct:.1f}",
            f"{per_call_mb:.2f}", fmt(pct(level.jitter_ms(), 99), 2), fmt(pct(level.tick_lag_ms(), 99), 2),
            f"{level.other_cpu_pct:.0f}", str(level.failed)]


def report(calls: int = 16, rounds: int = 2, seconds: float = 9.0) -> str:
    token = secrets.token_hex(16)
    lines, noise = caller_audio(LOAD_LINES), noise_bank()
    rows: list[list[str]] = []
    ratios: list[str] = []
    with tempfile.TemporaryDirectory(prefix="autospeak-phones-") as tmp:
        for r in range(1, rounds + 1):
            pair = {}
            for old in (True, False) if r % 2 else (False, True):
                note(f"round {r}: {'old' if old else 'new'} phones, {calls} calls ...")
                root = Path(tmp) / f"r{r}-{'old' if old else 'new'}"
                pair[old] = bench.run_level("instant", calls, seconds, root, token, lines, noise,
                                            old_phones=old)
                rows.append(_row(r, pair[old]))
            old_lv, new_lv = pair[True], pair[False]
            old_mb = (old_lv.rss_peak_kb - old_lv.rss_base_kb) / 1024 / calls
            new_mb = (new_lv.rss_peak_kb - new_lv.rss_base_kb) / 1024 / calls
            ratios.append(f"  round {r}: simulator CPU new/old = "
                          f"{new_lv.sim_cpu_pct / max(old_lv.sim_cpu_pct, 1e-9):.2f}; worker CPU new/old = "
                          f"{new_lv.worker_cpu_pct / max(old_lv.worker_cpu_pct, 1e-9):.2f}; worker MB/call "
                          f"old - new = {old_mb - new_mb:.2f}")
    headers = ["round", "phones", "calls", "sim CPU%", "sim CPU%/call", "wrk CPU%", "wrk MB/call", "jit p99",
               "sim lag p99", "other CPU%", "failed"]
    return "\n".join([
        "Simulated phones, old (client per ring, permessage-deflate) vs new (shared client, no compression): "
        f"instant profile, {calls} calls of {seconds:g} s, fresh worker per level",
        table(headers, rows), *ratios])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.calls.phones_ab",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=9.0)
    args = parser.parse_args(argv)
    if args.calls < 1 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--calls and --rounds must be at least 1, --seconds positive")
    print(report(args.calls, args.rounds, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
