"""`autospeak loadtest calls` and the simulator's load hygiene: the ramp runs two small levels against a
stack it starts (instant profile) and reports and plots both; the simulated phone's media WebSocket
negotiates no permessage-deflate (Twilio's does not); the embedded worker's --max-calls refuses the
call past its limit with a clean busy answer. No timing thresholds: figures are checked to exist."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cells.cli import main as autospeak
from cells.simulator.run import worker_process
from cells.simulator.twilio_peer import TwilioPeer


@pytest.mark.slow  # ~45 s of real-time calls through a cell (the default run's 15-minute budget)
def test_loadtest_ramps_two_levels_through_a_cell_and_plots_them(tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = autospeak(["loadtest", "calls", "--start", "--levels", "1,2", "--duration", "14", "--keep-going",
                      "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    levels = report["levels"]
    assert [lv["calls"] for lv in levels] == [1, 2]  # --keep-going: both ran even on a busy machine
    for lv in levels:
        assert lv["up"] == lv["calls"] and lv["failed"] == 0, lv["errors"]
        assert lv["frames"] > 0 and lv["jitter_p99_ms"] is not None  # the disclosure reached the phones
        assert lv["worker_cpu_pct"] is not None and lv["worker_cpu_pct"] > 0  # the worker's /proc figures
        assert lv["worker_active_peak"] is not None and lv["worker_active_peak"] >= 1  # its /metrics
        assert lv["worker_lateness_p99_ms"] is not None  # its lateness histogram, read at the level's end
        assert lv["timer_lag_p99_ms"] is not None
    assert sum(lv["v2v_n"] for lv in levels) >= 1  # at least one caller line got a timed reply
    assert any(lv["v2v_p50_ms"] is not None for lv in levels)
    assert any(lv["worker_v2v_p50_ms"] is not None for lv in levels)  # the worker's own, beside the phone's
    # The generator's own registry is in the report, with the calls it placed.
    assert "autospeak_loadgen_calls_started_total 3.0" in report["generator_metrics"]
    assert "autospeak_loadgen_frame_lateness_seconds_bucket" in report["generator_metrics"]
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 2 and "<polyline" in page  # both charts, with a line through the levels
    assert "Voice to voice" in page and "pacing jitter" in page and "slip limit" in page


def _ws_extensions(peer: TwilioPeer) -> str | None:
    assert peer.ws is not None and peer.ws.response is not None
    return peer.ws.response.headers.get("Sec-WebSocket-Extensions")


def test_the_simulated_phone_negotiates_no_permessage_deflate(tmp_path: Path) -> None:
    token = secrets.token_hex(16)

    async def call(compression: str | None) -> str | None:
        async with httpx.AsyncClient(timeout=10) as client:
            peer = TwilioPeer(url, token, client=client) if compression is None else TwilioPeer(
                url, token, client=client, compression=compression)
            await peer.open_stream(await peer.ring())
            try:
                return _ws_extensions(peer)
            finally:
                await peer.hang_up()

    with worker_process(tmp_path, token, ["--profile", "instant"]) as (_proc, url):
        assert asyncio.run(call(None)) is None  # the simulator's default, as Twilio: nothing negotiated
        # The worker (hypercorn) does accept deflate when a client asks: the header check above can fail.
        offered = asyncio.run(call("deflate"))
        assert offered is not None and "permessage-deflate" in offered


async def _active(client: httpx.AsyncClient, url: str, want: int, timeout_s: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_s
    active = -1
    while time.monotonic() < deadline:
        active = int((await client.get(f"{url}/healthz")).json()["active_calls"])
        if active == want:
            break
        await asyncio.sleep(0.1)
    return active


def test_max_calls_refuses_the_next_call_with_a_busy_answer(tmp_path: Path) -> None:
    token = secrets.token_hex(16)

    async def run(url: str) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            first = TwilioPeer(url, token, client=client)
            await first.open_stream(await first.ring())
            assert await _active(client, url, 1) == 1
            second = TwilioPeer(url, token, client=client)
            with pytest.raises(ValueError, match="no <Connect><Stream"):
                await second.ring()  # answered (200) with TwiML that says busy, no stream offered
            await first.hang_up()
            assert await _active(client, url, 0) == 0
            third = TwilioPeer(url, token, client=client)  # a slot is free again: taken as usual
            await third.open_stream(await third.ring())
            await third.hang_up()

    with worker_process(tmp_path, token, ["--profile", "instant", "--max-calls", "1"]) as (_proc, url):
        asyncio.run(run(url))


def test_max_calls_below_one_is_refused_at_start() -> None:
    proc = subprocess.run([sys.executable, "-m", "cells.worker", "--max-calls", "0"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--max-calls must be at least 1" in proc.stderr


def test_worker_quantiles_come_from_the_bucket_deltas_between_two_scrapes() -> None:
    from loadtest.calls.loadgen_metrics import bucket_quantile, histogram_buckets

    text = ('# HELP h x\n# TYPE h histogram\n'
            'h_bucket{le="0.1",stage="a"} 4.0\nh_bucket{le="0.5",stage="a"} 10.0\n'
            'h_bucket{le="+Inf",stage="a"} 10.0\nh_count{stage="a"} 10.0\nh_sum{stage="a"} 2.0\n'
            'h_bucket{le="0.1",stage="b"} 0.0\nh_bucket{le="0.5",stage="b"} 0.0\n'
            'h_bucket{le="+Inf",stage="b"} 7.0\nh_count{stage="b"} 7.0\nh_sum{stage="b"} 70.0\n')
    after = histogram_buckets(text, "h", stage="a")
    assert after == {0.1: 4.0, 0.5: 10.0, float("inf"): 10.0}
    before = {0.1: 4.0, 0.5: 4.0, float("inf"): 4.0}  # the 4 fast ones were there before the level
    assert bucket_quantile(before, after, 0.5) == 0.5  # all 6 observed during it fell in (0.1, 0.5]
    assert bucket_quantile(after, after, 0.5) is None  # nothing observed in between
    assert bucket_quantile({}, histogram_buckets(text, "h", stage="b"), 0.99) == float("inf")


def test_voice_to_voice_is_timed_at_the_phone_and_skips_late_replies() -> None:
    from loadtest.calls.sim import SimCall

    call = SimCall("CA1", started=0.0, ended=20.0, speech=[(1.0, 2.0), (5.0, 6.0), (9.0, 10.0)],
                   arrivals=[0.5, 2.4, 2.42, 7.0, 7.02])
    # Line 1: heard 0.4 s later. Line 2: its reply came before line 3 began. Line 3: no reply.
    assert [round(ms) for ms in call.voice_to_voice_ms()] == [400, 1000]
    call.arrivals = [0.5, 5.5]  # the only audio after line 1 came while line 2 was spoken: not its reply
    assert call.voice_to_voice_ms() == []
