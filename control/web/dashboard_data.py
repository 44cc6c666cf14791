"""What the SRE dashboard draws, read for one tenant: live calls by region and worker, per-turn latency
over time (voice-to-voice and each stage), error and fallback events, and how calls ended.

These are aggregates the API has no route for; every statement goes through `scoped_select`, so the
dashboard never sees another tenant's calls. Per-turn timings come from the call rows' `latency`,
which the event pipeline fills from the workers' `turn` events (timings only, never speech).
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Call, CallEvent
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select

LIVE_STATUSES: Final = ("queued", "ringing", "in_progress")
# The stages a worker times after the caller stops speaking (cells.call.timeline.STAGES, after speech_end).
STAGES: Final = ("turn_end", "stt_final", "first_token", "first_tts_audio", "first_frame_sent")
ERROR_KINDS: Final = ("provider_error", "provider_timeout", "control_failed", "barge_in")
MAX_CALLS: Final = 500  # calls read per window: the plot stays legible and the page fast
SLOW_LISTED: Final = 10
WINDOWS_H: Final = (1, 6, 24, 168)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def turn_points(call: Call) -> list[dict[str, Any]]:
    """One point per timed turn of `call`: when it happened, voice-to-voice and each stage in ms."""
    latency = call.latency if isinstance(call.latency, dict) else {}
    turns = latency.get("turns")
    points = []
    for n, timing in enumerate(turns if isinstance(turns, list) else [], start=1):
        if not isinstance(timing, dict):
            continue
        stages = timing.get("ms_after_speech_end")
        stages = stages if isinstance(stages, dict) else {}
        v2v = _number(stages.get("first_frame_sent"))
        if v2v is None:
            v2v = _number(timing.get("voice_to_voice_ms"))
        at_ms = timing.get("at_ms")
        offset = _number(at_ms.get("speech_end")) if isinstance(at_ms, dict) else None
        at = call.started_at + timedelta(milliseconds=offset or 0.0)
        index = timing.get("index")
        points.append({
            "call_id": str(call.id), "turn": index if isinstance(index, int) else n,
            "at": at.astimezone(UTC).isoformat(), "v2v_ms": v2v,
            "stages": {s: v for s in STAGES if (v := _number(stages.get(s))) is not None},
        })
    return points


def percentiles(values: list[float]) -> dict[str, float] | None:
    """Nearest-rank p50, p90, p99 and the extremes of `values`."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(pct: float) -> float:
        return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]

    return {"n": len(ordered), "min": ordered[0], "p50": rank(50), "p90": rank(90), "p99": rank(99),
            "max": ordered[-1]}


async def _live(session: AsyncSession, scope: TenantScope) -> list[dict[str, Any]]:
    calls = list(await session.scalars(
        scoped_select(Call, scope).where(Call.ended_at.is_(None), Call.status.in_(LIVE_STATUSES))
        .order_by(Call.started_at.desc()).limit(MAX_CALLS)))
    workers: dict[uuid.UUID, str] = {}
    if calls:
        started = await session.scalars(
            scoped_select(CallEvent, scope)
            .where(CallEvent.call_id.in_([c.id for c in calls]), CallEvent.kind == "call_started")
            .order_by(CallEvent.occurred_at))
        for event in started:  # the latest start wins: a resumed call moved to another worker
            worker = event.payload.get("worker_id") if isinstance(event.payload, dict) else None
            workers[event.call_id] = str(worker) if worker else "unassigned"
    groups: Counter[tuple[str, str]] = Counter((c.region, workers.get(c.id, "unassigned")) for c in calls)
    return [{"region": r, "worker": w, "calls": n} for (r, w), n in sorted(groups.items())]


async def _events(session: AsyncSession, scope: TenantScope, since: datetime) -> dict[str, int]:
    rows = await session.execute(
        scoped_select(CallEvent, scope)
        .where(CallEvent.kind.in_(ERROR_KINDS), CallEvent.occurred_at >= since)
        .with_only_columns(CallEvent.kind, func.count()).group_by(CallEvent.kind))
    counts = {kind: 0 for kind in ERROR_KINDS}
    counts.update({kind: int(n) for kind, n in rows.all()})
    return counts


def _summary(calls: list[Call]) -> dict[str, Any]:
    points = [p for c in calls for p in turn_points(c)]
    points.sort(key=lambda p: p["at"])
    by_stage: dict[str, list[float]] = defaultdict(list)
    for p in points:
        for stage, ms in p["stages"].items():
            by_stage[stage].append(ms)
    v2v = [p["v2v_ms"] for p in points if p["v2v_ms"] is not None]
    ended = [c for c in calls if c.ended_at is not None]
    dispositions = Counter((c.disposition or c.status) for c in ended)
    slow = sorted((p for p in points if p["v2v_ms"] is not None), key=lambda p: -p["v2v_ms"])[:SLOW_LISTED]
    return {
        "points": points,
        "voice_to_voice": percentiles(v2v),
        "stages": {s: percentiles(by_stage[s]) for s in STAGES if by_stage[s]},
        "slow_turns": slow,
        "calls": len(calls), "ended": len(ended),
        # "failed": the carrier or the cell could not connect it (no worker, busy, an error), per its status.
        "failed": sum(1 for c in ended if c.status == "failed"),
        "dispositions": dict(sorted(dispositions.items(), key=lambda kv: -kv[1])),
    }


async def dashboard_data(sessions: Any, scope: TenantScope, hours: int,
                         now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=hours)

    async def work(session: AsyncSession) -> dict[str, Any]:
        calls = list(await session.scalars(
            scoped_select(Call, scope).where(Call.started_at >= since)
            .order_by(Call.started_at.desc()).limit(MAX_CALLS)))
        data = _summary(calls)
        data["truncated"] = len(calls) == MAX_CALLS  # the page says it drew only the newest calls
        data["live"] = await _live(session, scope)
        data["events"] = await _events(session, scope, since)
        return data

    data = await run_transaction(sessions, work, scope=scope)
    turns = len(data["points"])
    failures = data["events"]["provider_error"] + data["events"]["provider_timeout"]
    data["rates"] = {
        "turns": turns,
        "provider_failures_per_100_turns": round(100 * failures / turns, 1) if turns else None,
        "failed_calls_pct": round(100 * data["failed"] / data["ended"], 1) if data["ended"] else None,
    }
    data.update(window_hours=hours, since=since.isoformat(), now=now.isoformat())
    return data

