"""`autospeak loadtest calls`: concurrent calls ramped against a running `autospeak up`, through a cell's
control plane as Twilio would call it (signed voice webhook, then the media stream on whichever worker
the cell assigned), level after level until pacing slips, too many calls fail, or the last level.

Per level: calls up and failed, voice to voice and frame lateness as the callers hear them, the
generator's own timer lag, the region's worker CPU (from /proc, the stack runs on this machine), and
the workers' own figures read from their /metrics (peak active calls, frame lateness p99 by bucket).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from loadtest.calls.figures import JITTER_LIMIT_P99_MS, machine_busy_s, pct
from loadtest.calls.loadgen_metrics import (
    WORKER_ACTIVE,
    WORKER_LATENESS,
    WORKER_STAGES,
    LoadgenMetrics,
    bucket_quantile,
    gauge_sum,
    histogram_buckets,
)
from loadtest.calls.sim import SimCall, simulated_call

REFUSED = "has no <Connect><Stream"  # the cell answered with TwiML that offers no stream: busy


class TargetError(RuntimeError):
    """No running stack where one was expected (the message says what to do)."""


@dataclass
class WorkerRef:
    name: str
    pid: int
    url: str

    def cpu_s(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    region: str
    base_url: str  # the cell's control plane: it answers the voice webhook
    auth_token: str = field(repr=False)
    number: str
    workers: list[WorkerRef]
    metrics_token: str | None = field(default=None, repr=False)


def _public_url(pid: int) -> str:
    """A worker's URL from its command line (`--public-url`): stack.json names the cells, not workers."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for flag, value in itertools.pairwise(args):
        if flag == b"--public-url":
            return value.decode()
    return ""


def target_from_data_dir(data_dir: Path, region: str) -> Target:
    try:
        stack = json.loads((data_dir / "stack.json").read_text())
        token = json.loads((data_dir / "secrets.json").read_text())["twilio_auth_token"]
        number = json.loads((data_dir / "demo.json").read_text())[region]["number"]
        base = stack["cells"][region]
    except (OSError, ValueError, KeyError) as exc:
        raise TargetError(f"no running stack with region {region} in {data_dir} ({exc}); start one with "
                          "`autospeak up --profile instant`, or pass --start") from None
    workers = []
    for name, pid in stack.get("children", {}).items():
        if name.startswith(f"worker-{region}-"):
            with contextlib.suppress(OSError):
                workers.append(WorkerRef(name, int(pid), _public_url(int(pid))))
    return Target(region, base, token, number, workers, os.environ.get("AUTOSPEAK_METRICS_TOKEN"))


@dataclass
class LevelResult:
    calls: int
    duration_s: float
    up: int = 0
    failed: int = 0
    refused: int = 0  # the cell answered busy (no free worker slot)
    errors: list[str] = field(default_factory=list)
    v2v_n: int = 0
    v2v_p50_ms: float | None = None
    v2v_p99_ms: float | None = None
    frames: int = 0
    jitter_p50_ms: float | None = None
    jitter_p99_ms: float | None = None
    timer_lag_p99_ms: float | None = None
    worker_cpu_pct: float | None = None
    generator_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0
    worker_active_peak: float | None = None
    worker_lateness_p99_ms: float | None = None  # upper bound of its /metrics bucket
    worker_v2v_p50_ms: float | None = None  # the workers' own voice to voice (their /metrics buckets)
    worker_v2v_p99_ms: float | None = None
    stopped: str = ""  # why the ramp stopped after this level ("" when it went on)
    carried_over: int = 0  # calls of the previous level the workers still served when this one began

    @property
    def error_rate(self) -> float:
        return self.failed / self.calls if self.calls else 0.0

    def to_dict(self) -> dict[str, Any]:
        # A worker quantile past its histogram's last bucket is inf: JSON says it as the string "inf".
        fields = {k: "inf" if isinstance(v, float) and math.isinf(v) else v for k, v in asdict(self).items()}
        return {**fields, "error_rate": self.error_rate}


class WorkerWatch:
    """The region's workers during a level: CPU from /proc, and /metrics scraped once a second."""

    def __init__(self, target: Target, client: httpx.AsyncClient) -> None:
        self.target, self.client = target, client
        self.peak_active: float | None = None
        self.before: dict[str, dict[float, float]] = {}
        self.after: dict[str, dict[float, float]] = {}
        self._cpu0: list[float | None] = []

    async def _scrape(self) -> list[str]:
        token = self.target.metrics_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        texts = []
        for w in self.target.workers:
            with contextlib.suppress(httpx.HTTPError):
                resp = await self.client.get(f"{w.url}/metrics", headers=headers, timeout=5)
                if resp.status_code == 200:
                    texts.append(resp.text)
        return texts

    async def begin(self) -> None:
        self._cpu0 = [w.cpu_s() for w in self.target.workers]
        self.before = await self._histograms()

    async def sample(self) -> None:
        active = [gauge_sum(t, WORKER_ACTIVE) for t in await self._scrape()]
        values = [a for a in active if a is not None]
        if values:
            self.peak_active = max(self.peak_active or 0.0, sum(values))

    async def end(self, expect: bool, timeout_s: float = 10.0) -> None:
        """The level's last scrape. With `expect` (calls were up), until the workers' lateness count
        has grown: a worker adds a call's frames at its hang-up, and a scrape of a starved worker can
        time out."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.after = await self._histograms()
            grown = _count(self.after["lateness"]) > _count(self.before.get("lateness", {}))
            if grown or not expect or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.5)

    async def _histograms(self) -> dict[str, dict[float, float]]:
        texts = await self._scrape()
        return {"lateness": self._merge([histogram_buckets(t, WORKER_LATENESS) for t in texts]),
                "v2v": self._merge([histogram_buckets(t, WORKER_STAGES, stage="voice_to_voice")
                                    for t in texts])}

    def quantile_ms(self, which: str, q: float) -> float | None:
        """Quantile q of what the workers observed during the level, as the bound of its bucket."""
        value = bucket_quantile(self.before.get(which, {}), self.after.get(which, {}), q)
        return None if value is None else value * 1000

    def cpu_s(self) -> float | None:
        """CPU seconds the workers used since begin(); None when none of them could be read."""
        now = [w.cpu_s() for w in self.target.workers]
        pairs = zip(self._cpu0, now, strict=True)
        deltas = [c1 - c0 for c0, c1 in pairs if c0 is not None and c1 is not None]
        return sum(deltas) if deltas else None

    @staticmethod
    def _merge(parts: Sequence[dict[float, float]]) -> dict[float, float]:
        out: dict[float, float] = {}
        for part in parts:
            for le, n in part.items():
                out[le] = out.get(le, 0.0) + n
        return out


def _count(buckets: dict[float, float]) -> float:
    """Observations in a cumulative histogram: its +Inf bucket."""
    return buckets.get(math.inf, 0.0)


def _classify(sims: Sequence[SimCall], level: LevelResult) -> None:
    """Up: its media stream opened. Failed: refused, broken, or no agent audio ever reached it."""
    for s in sims:
        level.up += s.started > 0
        if s.error or not s.arrivals:
            level.failed += 1
            level.refused += REFUSED in s.error
            if s.error and len(level.errors) < 5:
                level.errors.append(s.error[:200])


async def run_level(target: Target, calls: int, duration_s: float, lines: list[list[bytes]],
                    noise: list[bytes], metrics: LoadgenMetrics, client: httpx.AsyncClient) -> LevelResult:
    level = LevelResult(calls, duration_s)
    metrics.level.set(calls)
    watch = WorkerWatch(target, client)
    await watch.begin()
    stop = asyncio.Event()

    async def sampler() -> None:
        while not stop.is_set():
            await watch.sample()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def up() -> None:
        metrics.started.inc()
        metrics.active.inc()

    async def one(delay: float) -> SimCall:
        sim = await simulated_call(target.base_url, target.auth_token, lines, noise, duration_s, delay,
                                   client=client, to_number=target.number, on_up=up)
        if sim.started > 0:  # its stream had opened (on_up counted it)
            metrics.active.dec()
        if sim.error:
            metrics.failed.labels("refused" if REFUSED in sim.error else "error").inc()
        elif not sim.arrivals:
            metrics.failed.labels("no_audio").inc()
        return sim

    sampling = asyncio.create_task(sampler())
    gen0, all0, wall0 = time.process_time(), machine_busy_s(), time.monotonic()
    rng = np.random.default_rng(calls)  # calls ring over up to a second, each at its own 20 ms phase
    sims = await asyncio.gather(*(one(float(rng.uniform(0, min(1.0, 0.05 * calls)))) for _ in range(calls)))
    wall = time.monotonic() - wall0
    worker_cpu, gen_s, busy_s = watch.cpu_s(), time.process_time(), machine_busy_s()
    stop.set()
    await sampling
    await _drain(target, client)  # a worker counts a call's frame lateness into /metrics at its hang-up
    await watch.end(expect=any(s.started > 0 for s in sims))
    level.worker_cpu_pct = None if worker_cpu is None else 100 * worker_cpu / wall
    level.generator_cpu_pct = 100 * (gen_s - gen0) / wall
    level.other_cpu_pct = max(0.0, 100 * (busy_s - all0) / wall - (level.worker_cpu_pct or 0.0)
                              - level.generator_cpu_pct)
    _classify(sims, level)
    v2v = [ms for s in sims for ms in s.voice_to_voice_ms()]
    jitter = [ms for s in sims for ms in s.frame_lateness_ms()]
    lag = [ms for s in sims for ms in s.tick_lag_ms]
    level.v2v_n, level.v2v_p50_ms, level.v2v_p99_ms = len(v2v), pct(v2v, 50), pct(v2v, 99)
    level.frames, level.jitter_p50_ms, level.jitter_p99_ms = len(jitter), pct(jitter, 50), pct(jitter, 99)
    level.timer_lag_p99_ms = pct(lag, 99)
    level.worker_active_peak = watch.peak_active
    level.worker_lateness_p99_ms = watch.quantile_ms("lateness", 0.99)
    level.worker_v2v_p50_ms = watch.quantile_ms("v2v", 0.5)
    level.worker_v2v_p99_ms = watch.quantile_ms("v2v", 0.99)
    metrics.observe_level(calls, v2v, jitter, level.timer_lag_p99_ms, level.worker_cpu_pct or 0.0)
    return level


async def _drain(target: Target, client: httpx.AsyncClient, timeout_s: float = 30.0) -> int:
    """Until the workers report no active call (the last level's calls have ended), or the timeout;
    returns how many they still serve."""
    deadline = time.monotonic() + timeout_s
    while True:
        active = 0
        for w in target.workers:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                active += int((await client.get(f"{w.url}/healthz", timeout=2)).json().get("active_calls", 0))
        if active == 0 or time.monotonic() > deadline:
            return active
        await asyncio.sleep(0.5)


def stop_reason(level: LevelResult, max_error_rate: float) -> str:
    if level.error_rate > max_error_rate:
        return f"error rate {level.error_rate:.0%} > {max_error_rate:.0%}"
    if level.jitter_p99_ms is None:
        return "no agent audio reached the callers"
    if level.jitter_p99_ms >= JITTER_LIMIT_P99_MS:
        return f"pacing slipped: jitter p99 {level.jitter_p99_ms:.1f} ms >= {JITTER_LIMIT_P99_MS:.0f} ms"
    return ""


async def ramp(target: Target, counts: Sequence[int], duration_s: float, lines: list[list[bytes]],
               noise: list[bytes], metrics: LoadgenMetrics, max_error_rate: float,
               progress: Callable[[LevelResult], None], keep_going: bool = False) -> list[LevelResult]:
    """Levels in order until one slips or fails too often (that one is kept, to show how); with
    `keep_going` every level runs, the ones that slipped marked so."""
    results: list[LevelResult] = []
    async with httpx.AsyncClient(timeout=10) as client:  # one client rings every call, as one carrier
        for n in counts:
            left = await _drain(target, client)
            level = await run_level(target, n, duration_s, lines, noise, metrics, client)
            level.carried_over = left
            level.stopped = stop_reason(level, max_error_rate)
            results.append(level)
            progress(level)
            if level.stopped and not keep_going:
                break
    return results
