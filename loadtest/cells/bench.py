"""Cell benchmarks: what the coordination between control plane, NATS and the worker pools costs.

The embedded platform (`EmbeddedStack`: PostgreSQL, one nats-server per region, three cells with
workers eu 2, in 1, us 1) runs with the workers' `--profile instant` (zero-latency STT, dialogue and
TTS), so the figures measure coordination, not speech.

(a) Call setup: from the signed POST /twilio/voice to its TwiML answer. That covers the webhook's
    signature check, the agent lookup, the call_created publish to JetStream and the NATS slot
    request/reply to the region's worker pool. N sequential calls per region, then bursts of 8
    concurrent webhooks in eu. Each call then opens its media stream, holds it briefly and sends
    Twilio's `stop`, so the slot reserved for it frees at once (an unused reservation would hold the
    slot for 30 s).
(b) Event pipeline lag: for the events of those calls, received_at (the database's now() when the
    cell's consumer inserted the event) minus occurred_at (the publishing process's clock); one
    machine, so one clock.
(c) Resume gap: a call in eu keeps talking (the booking script); once the caller's first turn is
    persisted, the worker holding it is SIGKILLed. Measured from the kill to (1) the simulated Twilio's
    POST of the `<Connect action>` (its detection is instant here: the WebSocket closes) and the TwiML
    answer, (2) the new stream's `start`, (3) the first agent audio frame on the new stream. The killed
    worker is restarted before the next repetition.

Run: python -m loadtest.cells.bench [--quick]   (or: autospeak bench cells [--quick])
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cells.contract.envelope import call_id_for_sid
from cells.launcher.stack import Child, EmbeddedStack
from cells.simulator.caller import ScriptedCaller
from cells.simulator.scripts import SCRIPTS
from cells.simulator.twilio_peer import StreamTarget, TwilioPeer, parse_twiml
from cells.speech.espeak import EspeakEngine
from control.db.call_models import CallEvent
from control.db.session import create_engine
from control.db.tenancy import unscoped

REGIONS = ("eu", "in", "us")
WORKERS = {"eu": 2, "in": 1, "us": 1}
CAPACITY = 8  # per worker: a burst of 8 in eu never meets a full pool
CONCURRENCY = 8
WARMUP_CALLS = 2  # per region, not counted: the first call of a worker builds the agent
HOLD_S = 0.3  # how long a setup call keeps its stream open before Twilio's `stop`
PERCENTILES = (50, 95, 99)


def note(msg: str) -> None:
    """Progress on stderr, so that stdout carries only the report."""
    print(f"   {msg}", file=sys.stderr, flush=True)


# -- statistics and tables (pure; tests/test_cells_bench.py covers them) ---------------------------
@dataclass(frozen=True)
class Stats:
    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def summarize(values: Sequence[float]) -> Stats:
    if not len(values):
        return Stats(0, None, None, None, None)
    p50, p95, p99 = (float(v) for v in np.percentile(np.asarray(values, float), PERCENTILES))
    return Stats(len(values), p50, p95, p99, float(max(values)))


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def stats_row(label: str, values: Sequence[float], digits: int = 1) -> list[str]:
    s = summarize(values)
    return [label, str(s.n), *(fmt(v, digits) for v in (s.p50, s.p95, s.p99, s.max))]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    head = line(headers)
    return "\n".join([head, "-" * len(head), *(line(r) for r in rows)])


# -- the simulated carrier, with timestamps ----------------------------------------------------------
class TimedPeer(TwilioPeer):
    """TwilioPeer that notes (CLOCK_MONOTONIC) when it requests the `<Connect action>`, gets its answer
    and has sent a stream's `start`; the agent's media arrivals are already noted by the peer."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.action_sent_at: list[float] = []
        self.action_answered_at: list[float] = []
        self.stream_started_at: list[float] = []

    async def follow_action(self) -> StreamTarget | None:
        self.action_sent_at.append(time.monotonic())
        try:
            return await super().follow_action()
        finally:
            self.action_answered_at.append(time.monotonic())

    async def open_stream(self, target: StreamTarget) -> None:
        await super().open_stream(target)
        self.stream_started_at.append(time.monotonic())

    def first_audio_after(self, t: float) -> float | None:
        return next((a for a in self.playback.arrivals if a > t), None)


def new_peer(stack: EmbeddedStack, region: str, cls: type[TwilioPeer] = TwilioPeer) -> TwilioPeer:
    return cls(stack.api_url(region), stack.secrets["twilio_auth_token"], to_number=stack.demo[region].number)


async def timed_ring(peer: TwilioPeer, client: httpx.AsyncClient) -> tuple[float, StreamTarget]:
    """The voice webhook as Twilio sends it, on a shared client (so no client setup is timed)."""
    url = peer.base_url + "/twilio/voice"
    form = {"CallSid": peer.call_sid, "AccountSid": peer.account_sid, "From": peer.from_number,
            "To": peer.to_number, "Direction": "inbound", "CallStatus": "ringing", "ApiVersion": "2010-04-01"}
    headers = {"X-Twilio-Signature": peer.validator.compute_signature(url, form)}
    started = time.perf_counter()
    resp = await client.post(url, data=form, headers=headers)
    elapsed_ms = (time.perf_counter() - started) * 1000
    resp.raise_for_status()
    return elapsed_ms, parse_twiml(resp.text)


async def setup_call(stack: EmbeddedStack, region: str, client: httpx.AsyncClient) -> tuple[float, str]:
    """One call: webhook (timed), stream opened, held, then Twilio's `stop`. (ms, call_sid)."""
    peer = new_peer(stack, region)
    ms, target = await timed_ring(peer, client)
    await peer.open_stream(target)
    # Read what the agent sends, as a phone does: unread frames would stall the socket's closing handshake.
    receiver = asyncio.create_task(peer.receive_loop())
    await asyncio.sleep(HOLD_S)
    with contextlib.suppress(Exception):
        await peer.hang_up()
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    return ms, peer.call_sid


# -- (a) call setup ---------------------------------------------------------------------------------
@dataclass
class SetupResults:
    sequential: dict[str, list[float]] = field(default_factory=dict)
    concurrent: list[float] = field(default_factory=list)
    call_ids: dict[str, list[uuid.UUID]] = field(default_factory=dict)


async def measure_setup(stack: EmbeddedStack, n: int, bursts: int) -> SetupResults:
    out = SetupResults()
    async with httpx.AsyncClient(timeout=15) as client:
        for region in REGIONS:
            note(f"(a) {region}: {WARMUP_CALLS} warm-up calls, then {n} sequential calls")
            for _ in range(WARMUP_CALLS):
                await setup_call(stack, region, client)
            times = out.sequential.setdefault(region, [])
            for _ in range(n):
                ms, sid = await setup_call(stack, region, client)
                times.append(ms)
                out.call_ids.setdefault(region, []).append(call_id_for_sid(sid))
        note(f"(a) eu: {bursts} bursts of {CONCURRENCY} concurrent webhooks")
        for _ in range(bursts):
            calls = await asyncio.gather(*(setup_call(stack, "eu", client) for _ in range(CONCURRENCY)))
            for ms, sid in calls:
                out.concurrent.append(ms)
                out.call_ids["eu"].append(call_id_for_sid(sid))
            await asyncio.sleep(0.3)  # the workers see the `stop`s and free the slots
    return out


# -- (b) event pipeline lag ---------------------------------------------------------------------------
async def event_rows(engine: AsyncEngine, call_ids: Sequence[uuid.UUID]) -> list[tuple[str, str, float]]:
    """(region, kind, received_at - occurred_at in ms) of every persisted event of the calls."""
    stmt = unscoped(select(CallEvent.region, CallEvent.kind, CallEvent.occurred_at, CallEvent.received_at)
                    .where(CallEvent.call_id.in_(list(call_ids))),
                    "bench: event lag across the demo tenants of every region")
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [(r.region, r.kind, (r.received_at - r.occurred_at).total_seconds() * 1000) for r in rows]


async def wait_events_settled(engine: AsyncEngine, call_ids: Sequence[uuid.UUID],
                              timeout: float = 30.0) -> list[tuple[str, str, float]]:
    """Every call's call_ended persisted and no new event for a second (recordings come last)."""
    deadline = time.monotonic() + timeout
    prev = -1
    while True:
        rows = await event_rows(engine, call_ids)
        ended = sum(1 for _, kind, _ in rows if kind == "call_ended")
        if (ended >= len(call_ids) and len(rows) == prev) or time.monotonic() > deadline:
            if ended < len(call_ids):
                note(f"(b) only {ended} of {len(call_ids)} calls have call_ended persisted")
            return rows
        prev = len(rows)
        await asyncio.sleep(1.0)


# -- (c) resume gap -------------------------------------------------------------------------------------
@dataclass
class ResumeSample:
    killed: str
    resumed_on: str = "-"
    action_sent_ms: float | None = None
    action_answered_ms: float | None = None
    stream_start_ms: float | None = None
    first_audio_ms: float | None = None


async def _events_of(engine: AsyncEngine, call_id: uuid.UUID) -> list[tuple[str, dict]]:
    stmt = unscoped(select(CallEvent.kind, CallEvent.payload).where(CallEvent.call_id == call_id)
                    .order_by(CallEvent.occurred_at), "bench: one call's events, read by its id")
    async with engine.connect() as conn:
        return [(r.kind, r.payload) for r in (await conn.execute(stmt)).all()]


async def _wait(predicate: object, timeout: float, what: str, every: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


def worker_child(stack: EmbeddedStack, worker_id: str) -> Child:
    return next(w for w in stack.cells["eu"].workers if w.args[w.args.index("--worker-id") + 1] == worker_id)


async def resume_once(stack: EmbeddedStack, engine: AsyncEngine, voice: EspeakEngine) -> ResumeSample:
    peer = new_peer(stack, "eu", TimedPeer)
    assert isinstance(peer, TimedPeer)
    caller = ScriptedCaller(peer, SCRIPTS["booking"], engine=voice, max_call_s=90)
    call_id = call_id_for_sid(peer.call_sid)
    await peer.open_stream(await peer.ring())
    task = asyncio.create_task(caller.run())
    victim: Child | None = None
    try:
        async def first_turn() -> str | None:
            events = await _events_of(engine, call_id)
            started = [p for k, p in events if k == "call_started"]
            heard = any(k == "transcript" for k, _ in events)
            return str(started[0]["worker_id"]) if started and heard else None

        worker_id = str(await _wait(first_turn, 30, "the caller's first turn", every=0.05))
        victim = worker_child(stack, worker_id)
        assert victim.proc is not None
        killed_at = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGKILL)
        sample = ResumeSample(killed=worker_id)

        def resumed_audio() -> float | None:
            return peer.first_audio_after(peer.stream_started_at[-1]) if len(peer.stream_started_at) > 1 \
                else None

        with contextlib.suppress(TimeoutError):
            await _wait(lambda: resumed_audio() or task.done(), 20, "audio on the new stream", every=0.005)

        def since(values: list[float]) -> float | None:
            return (values[0] - killed_at) * 1000 if values else None

        sample.action_sent_ms = since(peer.action_sent_at)
        sample.action_answered_ms = since(peer.action_answered_at)
        sample.stream_start_ms = since(peer.stream_started_at[1:])
        audio = resumed_audio()
        sample.first_audio_ms = since([audio] if audio is not None else [])
        await asyncio.sleep(0.5)
    finally:
        task.cancel()  # the caller hangs up (Twilio's `stop`), so the new worker ends the call
        await asyncio.gather(task, return_exceptions=True)
        if victim is not None:
            await asyncio.to_thread(stack.restart_child, victim)
    started = [p for k, p in await _events_of(engine, call_id) if k == "call_started" and p.get("resumed")]
    if started:
        sample.resumed_on = str(started[-1].get("worker_id"))
    return sample


# -- the run ----------------------------------------------------------------------------------------------
async def measure(stack: EmbeddedStack, n: int, bursts: int, repeats: int) -> str:
    engine = create_engine(stack.database_url)
    try:
        setup = await measure_setup(stack, n, bursts)
        all_ids = [c for ids in setup.call_ids.values() for c in ids]
        note(f"(b) waiting for the events of {len(all_ids)} calls to be persisted")
        rows = await wait_events_settled(engine, all_ids)
        voice = EspeakEngine()
        samples = []
        for i in range(repeats):
            note(f"(c) resume {i + 1}/{repeats}: booking call in eu, SIGKILL its worker")
            try:
                samples.append(await resume_once(stack, engine, voice))
            except Exception as exc:  # one failed repetition still leaves the other figures
                note(f"(c) resume {i + 1} failed: {exc!r}")
                samples.append(ResumeSample(killed="failed"))
    finally:
        await engine.dispose()
    return render(setup, rows, samples, n, bursts)


def render(setup: SetupResults, rows: Sequence[tuple[str, str, float]], samples: Sequence[ResumeSample],
           n: int, bursts: int) -> str:
    heads = ["webhooks", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    lag_heads = ["events", *heads[2:]]
    setup_rows = [stats_row(f"{r} sequential", setup.sequential.get(r, [])) for r in REGIONS]
    setup_rows.append(stats_row(f"eu {CONCURRENCY} concurrent", setup.concurrent))
    lag_rows = [stats_row(r, [ms for reg, _, ms in rows if reg == r]) for r in REGIONS]
    lag_rows.append(stats_row("all", [ms for _, _, ms in rows]))
    kinds = sorted({kind for _, kind, _ in rows})
    kind_rows = [stats_row(k, [ms for _, kind, ms in rows if kind == k]) for k in kinds]
    resume_heads = ["run", "killed", "resumed on", "action POST", "action answered", "new start",
                    "first audio"]
    resume_rows = [[str(i), s.killed, s.resumed_on, *(fmt(v) for v in (
        s.action_sent_ms, s.action_answered_ms, s.stream_start_ms, s.first_audio_ms))]
        for i, s in enumerate(samples, 1)]
    if len(samples) > 1:
        resume_rows.append(["median", "", "", *(fmt(summarize(
            [v for s in samples if (v := getattr(s, a)) is not None]).p50) for a in (
            "action_sent_ms", "action_answered_ms", "stream_start_ms", "first_audio_ms"))])
    return "\n\n".join([
        f"(a) call setup: signed POST /twilio/voice -> TwiML answer (agent lookup, call_created publish,\n"
        f"    NATS slot request/reply); {n} sequential calls per region after {WARMUP_CALLS} warm-up calls,"
        f"\n    and {bursts} bursts of {CONCURRENCY} concurrent webhooks in eu\n"
        + table(heads, setup_rows),
        "(b) event pipeline lag: received_at (database now() at insert) - occurred_at (publisher's clock),\n"
        "    every persisted event of the calls of (a)\n" + table(["region", *lag_heads], lag_rows)
        + "\n\n    by event kind, all regions\n" + table(["kind", *lag_heads], kind_rows),
        "(c) resume gap in eu, ms from SIGKILL of the worker holding a talking call (booking script) to:\n"
        "    the simulated Twilio's <Connect action> POST, its TwiML answer, the new stream's `start`,\n"
        "    the first agent audio frame on the new stream\n" + table(resume_heads, resume_rows),
    ])


def report(quick: bool = False) -> str:
    n = 10 if quick else 30
    bursts = 2 if quick else 4
    repeats = 1 if quick else 3
    command = "python -m loadtest.cells.bench" + (" --quick" if quick else "")
    data_dir = Path(tempfile.mkdtemp(prefix="autospeak-bench-cells-"))
    stack = EmbeddedStack(data_dir, base_port=None, workers=WORKERS, capacity=CAPACITY, profile="instant")
    load = os.getloadavg()
    header = "\n".join([
        f"AutoSpeak cell benchmarks   command: {command}",
        f"setup: EmbeddedStack (PostgreSQL 18, 3 nats-servers as a supercluster, control API + workers per "
        f"region),\n       workers {', '.join(f'{r} {w}' for r, w in WORKERS.items())}, capacity {CAPACITY} "
        f"each, all on one machine ({os.cpu_count()} CPUs, load average {load[0]:.2f} at start)",
        "profile: workers run --profile instant (zero-latency STT, dialogue and TTS): the figures measure",
        "         coordination (webhook, NATS, JetStream, database), not speech",
    ])
    started = time.monotonic()
    note("starting the embedded stack (PostgreSQL, NATS supercluster, 3 cells) ...")
    try:
        stack.start()
        note(f"stack up in {time.monotonic() - started:.1f} s")
        body = asyncio.run(measure(stack, n, bursts, repeats))
    finally:
        note("stopping the stack ...")
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    note(f"done in {time.monotonic() - started:.1f} s")
    return f"{header}\n\n{body}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.cells.bench",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and one resume (about 1.5 minutes)")
    args = parser.parse_args(argv)
    # A SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C, so the stack's PostgreSQL and NATS stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(report(quick=args.quick), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
