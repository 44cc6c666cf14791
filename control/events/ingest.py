"""Apply one call event to the database, exactly once, in one transaction.

The CallEvent row (unique on region + event_id) is the idempotency record: it is inserted first with
ON CONFLICT DO NOTHING, and an event whose row already exists changes nothing else. So a JetStream
redelivery, a publisher's retry beyond the stream's duplicate window, or a replay of the whole stream
leaves the database as it was. Webhook deliveries are enqueued in the same transaction, keyed by the
event id, so a committed event always has its deliveries and a rolled back one never does.

Nothing is stored or sent unredacted: the event's payload, the turn texts and the webhook payloads
pass through control.events.redact (card numbers always; e-mails and phone numbers unless the call's
agent switched `redact_pii` off). Identifiers (ids, sids, object keys, the call's own numbers) are
left as they are.

A call ends once: the first of call_ended (worker), a terminal call_status (carrier) and
call_rejected (control: no worker took the call) sets its status, ended_at and disposition, makes the
one usage record (when a duration is known; never for a rejected call) and the one call.ended
webhook. Later end events are stored as events and change nothing.

Data of the wrong type anywhere ingest reads raises EventRejected: such an event can never apply.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.contract.envelope import CallEventEnvelope
from control.auditlog.writer import record_agent_event
from control.db.models import (
    Agent,
    Call,
    CallEvent,
    Recording,
    Tenant,
    Turn,
    UsageRecord,
    WebhookDelivery,
    WebhookEndpoint,
)
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select
from control.events.fields import (
    INT32_MAX,
    EventRejected,
    bigint,
    clean,
    integer,
    is_number,
    iso,
    number,
    string,
    truth,
)
from control.events.redact import KEEP_KEYS, redact_payload
from control.events.usage import CURRENCY, amount_micros, billable_seconds

log = logging.getLogger(__name__)

__all__ = [
    "END_DISPOSITIONS",
    "PUBLIC_EVENT_TYPES",
    "REJECT_REASONS",
    "EventRejected",
    "IngestOutcome",
    "IngestResult",
    "apply_event",
    "ingest_event",
    "twilio_status",
]

PUBLIC_EVENT_TYPES: Final = (
    "call.created", "call.started", "call.ended", "call.transcript", "recording.ready",
)

# Status order: a late or replayed event never moves a call backwards (e.g. "ringing" after "completed").
_STATUS_RANK: Final = {"queued": 0, "ringing": 1, "in_progress": 2}
TERMINAL_STATUSES: Final = frozenset({"completed", "busy", "failed", "no_answer", "canceled"})
_TWILIO_STATUS: Final = {
    "queued": "queued", "initiated": "queued", "ringing": "ringing", "answered": "in_progress",
    "in-progress": "in_progress", "in_progress": "in_progress", "completed": "completed", "busy": "busy",
    "failed": "failed", "no-answer": "no_answer", "no_answer": "no_answer", "canceled": "canceled",
}
# The disposition of a call the carrier ended before any worker did (a completed call whose worker
# never reported: the other party hung up, as far as anyone can tell).
END_DISPOSITIONS: Final = {
    "completed": "caller_hung_up", "busy": "busy", "failed": "failed", "no_answer": "no_answer",
    "canceled": "canceled",
}
# Why the control plane could not hand a call to a worker (call_rejected's reason).
REJECT_REASONS: Final = frozenset({"no_worker", "unknown_number", "agent_missing", "stream_never_connected"})
# Latency samples kept per call; the aggregates cover them all, the list is for the dashboard.
MAX_LATENCY_TURNS: Final = 500
MAX_TEXT_CHARS: Final = 20_000
MAX_PAUSED_SEGMENTS: Final = 1_000
_KEEP_KEYS: Final = KEEP_KEYS  # identifiers and the call's own metadata, never speech


class IngestOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: IngestOutcome
    deliveries: int = 0  # webhook deliveries the event enqueued (so the dispatcher can be woken)


@dataclass(slots=True)
class _Event:
    env: CallEventEnvelope
    scope: TenantScope
    call_id: uuid.UUID
    occurred: datetime
    data: Mapping[str, Any]
    pii: bool = True  # redact e-mails and phone numbers too (the agent's `redact_pii`)
    deliveries: int = field(default=0)


async def ingest_event(
    sessions: async_sessionmaker[AsyncSession],
    envelope: CallEventEnvelope,
    *,
    stream_region: str | None = None,
) -> IngestOutcome:
    """Apply `envelope` in its own transaction; raise EventRejected for an event that never fits.

    `stream_region` is the region of the stream the event came from; an event claiming another
    region is rejected, so one cell's stream can never write another region's rows.
    """
    return (await apply_event(sessions, envelope, stream_region=stream_region)).outcome


async def apply_event(
    sessions: async_sessionmaker[AsyncSession],
    envelope: CallEventEnvelope,
    *,
    stream_region: str | None = None,
) -> IngestResult:
    """ingest_event, also telling how many webhook deliveries the event enqueued."""
    if stream_region is not None and envelope.region != stream_region:
        raise EventRejected(f"event of region {envelope.region!r} on the stream of {stream_region!r}")
    event = _prepare(envelope)
    # A fresh copy per attempt: run_transaction may run the body again after a serialization failure.
    return await run_transaction(sessions, lambda s: _apply(s, replace(event)), scope=event.scope)


def _prepare(env: CallEventEnvelope) -> _Event:
    try:
        occurred = datetime.fromtimestamp(float(env.occurred_at), UTC)
    except (ValueError, OverflowError, OSError):
        raise EventRejected("occurred_at is out of range") from None
    # The envelope validated both ids as UUID text already.
    scope = TenantScope(uuid.UUID(env.tenant_id), env.region)
    return _Event(env, scope, uuid.UUID(env.call_id), occurred, clean(env.data, 0))


async def _apply(session: AsyncSession, event: _Event) -> IngestResult:
    """The body of the ingest transaction; `session` must be scoped to the event's tenant."""
    env, scope = event.env, event.scope
    tenant = (await session.execute(
        select(Tenant.home_region, Tenant.plan).where(Tenant.id == scope.tenant_id)
    )).one_or_none()
    if tenant is None:
        raise EventRejected("unknown tenant")
    if tenant.home_region != env.region:
        raise EventRejected(f"tenant is homed in {tenant.home_region!r}, not {env.region!r}")

    # The call row comes first: the event row references it, and an event that overtook its call's
    # call_created (or a call_created for a queued outbound call) must not be lost.
    await session.execute(
        insert(Call)
        .values(**await _new_call_values(session, event))
        .on_conflict_do_nothing(index_elements=["id", "region"])
    )
    # Lock the call so events of one call serialise (turn numbers, latency, the one end).
    call = (await session.execute(
        scoped_select(Call, scope).where(Call.id == event.call_id).with_for_update()
    )).scalar_one()

    # Redact before anything is written: the event row, the turns and the webhook payloads all read
    # event.data from here on.
    event.pii = await _redact_pii(session, event, call)
    event.data = redact_payload(event.data, pii=event.pii, keep=_KEEP_KEYS)
    inserted = await session.scalar(
        insert(CallEvent)
        .values(
            id=uuid.uuid4(), region=scope.region, tenant_id=scope.tenant_id, call_id=event.call_id,
            event_id=env.event_id, kind=env.kind, payload=dict(event.data), occurred_at=event.occurred,
        )
        .on_conflict_do_nothing(index_elements=["region", "event_id"])
        .returning(CallEvent.id)
    )
    if inserted is None:
        return IngestResult(IngestOutcome.DUPLICATE)

    handler = _HANDLERS.get(env.kind)
    if handler is not None:
        await handler(session, event, call, tenant.plan)
    record_agent_event(session, scope, env.kind, call, event.data, event.occurred)  # tool calls, overrides
    return IngestResult(IngestOutcome.APPLIED, event.deliveries)


async def _redact_pii(session: AsyncSession, event: _Event, call: Call) -> bool:
    """The call's agent's `redact_pii` compliance setting; on when unknown or absent."""
    agent_id = call.agent_id
    if agent_id is None and event.env.kind == "call_created":
        agent_id = await _known_agent(session, event.scope, event.data.get("agent_id"))
    if agent_id is None:
        return True
    stmt = scoped_select(Agent, event.scope).where(Agent.id == agent_id).with_only_columns(Agent.compliance)
    compliance = await session.scalar(stmt)
    # Only an explicit false switches it off: a malformed setting must not leak personal data.
    return not (isinstance(compliance, dict) and compliance.get("redact_pii") is False)


# --- call row ---------------------------------------------------------------------------------


async def _new_call_values(session: AsyncSession, event: _Event) -> dict[str, Any]:
    """Values for the call row if it does not exist yet: full for call_created, minimal otherwise."""
    data, scope = event.data, event.scope
    values: dict[str, Any] = {
        "id": event.call_id, "region": scope.region, "tenant_id": scope.tenant_id,
        "direction": "inbound", "from_e164": "", "to_e164": "", "carrier": "twilio",
        "status": "ringing", "started_at": event.occurred, "latency": {},
    }
    if event.env.kind == "call_created":
        values.update(await _created_fields(session, event))
    elif (sid := string(data, "call_sid", 64)) is not None:
        values["carrier_call_sid"] = sid
    return values


async def _created_fields(session: AsyncSession, event: _Event) -> dict[str, Any]:
    data, out = event.data, {}
    direction = string(data, "direction", 16)
    if direction in ("inbound", "outbound"):
        out["direction"] = direction
    for key, column in (("from", "from_e164"), ("to", "to_e164")):
        if (number := string(data, key, 16)) is not None:
            out[column] = number
    if (sid := string(data, "call_sid", 64)) is not None:
        out["carrier_call_sid"] = sid
    if (carrier := string(data, "carrier", 32)) is not None:
        out["carrier"] = carrier
    if (agent_id := await _known_agent(session, event.scope, data.get("agent_id"))) is not None:
        out["agent_id"] = agent_id
        version = data.get("agent_version")
        if isinstance(version, int) and not isinstance(version, bool) and 1 <= version < 2**31:
            out["agent_version"] = version  # the published version the call runs
    return out


async def _known_agent(session: AsyncSession, scope: TenantScope, raw: Any) -> uuid.UUID | None:
    # A dangling or unparsable agent id would violate the foreign key and make the event fail on every
    # retry; the call is still worth recording without its agent.
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise EventRejected("agent_id must be a string")
    try:
        agent_id = uuid.UUID(raw)
    except ValueError:
        return None
    stmt = scoped_select(Agent, scope).where(Agent.id == agent_id).with_only_columns(Agent.id)
    found: uuid.UUID | None = await session.scalar(stmt)
    return found


def _advance(call: Call, status: str) -> bool:
    """Move the call to `status` unless it is already there or further along."""
    current = call.status
    if current in TERMINAL_STATUSES:
        return False
    if status in TERMINAL_STATUSES or _STATUS_RANK.get(status, -1) > _STATUS_RANK.get(current, -1):
        call.status = status
        return True
    return False


def twilio_status(raw: Any) -> str | None:
    """Twilio's CallStatus as a call status ("in-progress" -> "in_progress"); None if unknown."""
    return _TWILIO_STATUS.get(raw) if isinstance(raw, str) else None


# --- handlers ---------------------------------------------------------------------------------


async def _on_created(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    # The row may predate this event (queued outbound call, or an event that overtook it): the
    # carrier webhook is authoritative for the parties and the carrier id.
    fields = await _created_fields(session, event)
    for column, value in fields.items():
        setattr(call, column, value)
    await _enqueue(session, event, "call.created", {
        "direction": call.direction, "from": call.from_e164, "to": call.to_e164,
        "agent_id": str(call.agent_id) if call.agent_id else None,
    })


async def _on_started(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    resumed = truth(event.data, "resumed")
    _advance(call, "in_progress")
    if call.carrier_call_sid is None and (sid := string(event.data, "call_sid", 64)) is not None:
        call.carrier_call_sid = sid
    # A resumed stream (another worker took over) is the same call: one call.started per call.
    if not resumed:
        await _enqueue(session, event, "call.started", {"started_at": iso(event.occurred)})


async def _on_transcript(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    if truth(event.data, "ignored"):
        return
    await _add_turn(session, event, call, "caller", interrupted=False)


async def _on_agent_said(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    await _add_turn(session, event, call, "agent", interrupted=truth(event.data, "interrupted"))


async def _add_turn(
    session: AsyncSession, event: _Event, call: Call, speaker: str, *, interrupted: bool
) -> None:
    text = event.data.get("text")
    if not isinstance(text, str):
        raise EventRejected(f"{event.env.kind} without text")
    # Redacted before it is cut (event.data is), so a cut never leaves half a card number behind.
    text = text[:MAX_TEXT_CHARS]
    offset = _offset_ms(call, event.occurred)
    start_ms = integer(event.data, "start_ms", offset)
    end_ms = max(integer(event.data, "end_ms", offset), start_ms)
    # The consumer applies the region's events one at a time in stream order and the call row is
    # locked, so max+1 numbers the turns in the order they were spoken.
    last = await session.scalar(select(func.max(Turn.seq)).where(Turn.call_id == call.id))
    seq = (last or 0) + 1
    session.add(event.scope.new(
        Turn, call_id=call.id, seq=seq, speaker=speaker, text=text,
        start_ms=start_ms, end_ms=end_ms, interrupted=interrupted,
    ))
    await _enqueue(session, event, "call.transcript", {
        "speaker": speaker, "text": text, "seq": seq, "start_ms": start_ms, "end_ms": end_ms,
        "interrupted": interrupted,
    })


async def _on_turn(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    stages = event.data.get("ms_after_speech_end")
    if stages is not None and not isinstance(stages, dict):
        raise EventRejected("turn timings must be an object")
    for value in (stages or {}).values():
        if value is not None and not is_number(value):
            raise EventRejected("turn timings must be numbers")
    number(event.data, "voice_to_voice_ms")
    # The texts are already in the turn rows; latency keeps timings only, so it holds no speech.
    timing = {k: v for k, v in event.data.items() if k not in ("caller_text", "agent_text")}
    latency = dict(call.latency) if isinstance(call.latency, dict) else {}
    kept = latency.get("turns")
    turns = [*(kept if isinstance(kept, list) else []), timing][-MAX_LATENCY_TURNS:]
    latency["turns"] = turns
    latency["summary"] = _latency_summary(turns)
    call.latency = latency  # a new object, so the JSONB column is written


def _latency_summary(turns: list[Any]) -> dict[str, Any]:
    samples = sorted(v for t in turns if (v := _voice_to_voice(t)) is not None)
    summary: dict[str, Any] = {"turns": len(turns), "samples": len(samples)}
    if samples:
        summary["voice_to_voice_ms"] = {
            "p50": _percentile(samples, 50), "p95": _percentile(samples, 95), "max": samples[-1],
        }
    return summary


def _voice_to_voice(timing: Any) -> float | None:
    """The caller's end of speech to the agent's first audio frame, in milliseconds."""
    # Tolerant: stored samples predate the checks in _on_turn, and one odd sample must not stop a call.
    if not isinstance(timing, dict):
        return None
    stages = timing.get("ms_after_speech_end")
    value = stages.get("first_frame_sent") if isinstance(stages, dict) else None
    if value is None:
        value = timing.get("voice_to_voice_ms")
    return float(value) if is_number(value) else None


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def _on_recording(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    key = string(event.data, "object_key", 1024)
    if key is None or key.startswith("/") or ".." in key.split("/"):
        raise EventRejected("recording_ready without a usable object key")
    recording = event.scope.new(
        Recording, id=uuid.uuid4(), call_id=call.id, object_key=key,
        content_type=string(event.data, "content_type", 100) or "audio/wav",
        duration_ms=integer(event.data, "duration_ms", 0), size_bytes=bigint(event.data, "size_bytes"),
        paused_segments=_paused_segments(event.data.get("paused_segments")),
    )
    session.add(recording)
    await _enqueue(session, event, "recording.ready", {
        "recording_id": str(recording.id), "content_type": recording.content_type,
        "duration_ms": recording.duration_ms, "size_bytes": recording.size_bytes,
    })


def _paused_segments(raw: Any) -> list[Any]:
    """[[start_ms, end_ms], ...] or [{"start_ms": .., "end_ms": ..}, ...] of the paused stretches."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_PAUSED_SEGMENTS:
        raise EventRejected("paused_segments must be a list of segments")
    for segment in raw:
        if isinstance(segment, dict):
            bounds = [segment.get("start_ms"), segment.get("end_ms")]
        elif isinstance(segment, list) and len(segment) == 2:
            bounds = segment
        else:
            raise EventRejected("a paused segment must be [start_ms, end_ms]")
        if not all(is_number(b) and b >= 0 for b in bounds):
            raise EventRejected("a paused segment's bounds must be non-negative numbers")
    return list(raw)


async def _on_status(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    raw = event.data.get("call_status")
    if not isinstance(raw, str):
        raise EventRejected("call_status must be a string")
    duration = number(event.data, "call_duration")
    status = twilio_status(raw)
    if status is None:
        return  # stored as an event; nothing to change
    if status not in TERMINAL_STATUSES:
        _advance(call, status)
        return
    if status == "completed" and duration is None:
        # Billing must not depend on the worker's call_ended arriving (a worker can die with the call).
        duration = (event.occurred - call.started_at).total_seconds() if call.started_at else None
    await _finish(session, event, call, plan, status=status, disposition=END_DISPOSITIONS[status],
                  duration=duration, usage=event.data)


async def _on_rejected(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    reason = string(event.data, "reason", 64)
    if reason is None:
        raise EventRejected("call_rejected without a reason")
    if reason not in REJECT_REASONS:
        log.info("call_rejected with an unlisted reason; stored as the disposition")
    started = select(CallEvent.id).where(
        CallEvent.region == event.scope.region, CallEvent.tenant_id == event.scope.tenant_id,
        CallEvent.call_id == call.id, CallEvent.kind == "call_started").limit(1)
    if await session.scalar(started) is not None:
        # A worker has the call (a retried webhook reached another worker, or a reservation ran out
        # after all): a stale rejection must not end a live call. Kept as an event only.
        return
    # The call never reached a worker: nothing to bill.
    await _finish(session, event, call, plan, status="failed", disposition=reason, duration=None, usage={})


async def _on_ended(session: AsyncSession, event: _Event, call: Call, plan: str) -> None:
    data = event.data
    disposition = string(data, "disposition", 64)
    duration = number(data, "duration_s")
    # A worker counts its turns; an end the control plane reports (a failed resume) lets the rows count.
    turns = integer(data, "turns", 0) if number(data, "turns") is not None else None
    if duration is None:
        duration = (event.occurred - call.started_at).total_seconds() if call.started_at else 0
    if call.ended_at is not None and disposition and call.disposition == END_DISPOSITIONS["completed"]:
        # The carrier's "completed" overtook the worker's report (the worker uploads the recording
        # first): the end, the usage record and the webhook stay, but the worker knows *why* the
        # call ended (booked, transferred, ...), which the carrier cannot.
        call.disposition = disposition
        return
    await _finish(session, event, call, plan, status="completed", disposition=disposition,
                  duration=duration, usage=data, turns=turns)


async def _finish(
    session: AsyncSession, event: _Event, call: Call, plan: str, *, status: str, disposition: str | None,
    duration: float | None, usage: Mapping[str, Any], turns: int | None = None,
) -> None:
    """End the call, unless an earlier end event did: status, ended_at, disposition, usage, call.ended."""
    if call.ended_at is not None:
        return  # the first end wins; this one stays as an event only
    if call.status not in TERMINAL_STATUSES:
        call.status = status
    call.ended_at = event.occurred
    if call.disposition is None and disposition is not None:
        call.disposition = disposition
    if duration is not None:
        await _record_usage(session, event, call, plan, duration, usage)
    if turns is None:
        stmt = select(func.count()).select_from(Turn).where(Turn.call_id == call.id)
        turns = int(await session.scalar(stmt) or 0)
    await _enqueue(session, event, "call.ended", {
        "disposition": call.disposition, "status": call.status, "ended_at": iso(call.ended_at),
        "duration_s": billable_seconds(duration), "turns": turns,
    })


async def _record_usage(
    session: AsyncSession, event: _Event, call: Call, plan: str, duration: Any, data: Mapping[str, Any]
) -> None:
    seconds = min(billable_seconds(duration), INT32_MAX)
    await session.execute(
        insert(UsageRecord)
        .values(
            id=uuid.uuid4(), region=event.scope.region, tenant_id=event.scope.tenant_id, call_id=call.id,
            billable_seconds=seconds, stt_seconds=integer(data, "stt_seconds", 0),
            tts_characters=integer(data, "tts_characters", 0),
            llm_input_tokens=integer(data, "llm_input_tokens", 0),
            llm_output_tokens=integer(data, "llm_output_tokens", 0),
            amount_micros=amount_micros(seconds, plan),
            currency=CURRENCY,
        )
        .on_conflict_do_nothing(index_elements=["region", "call_id"])
    )


_Handler = Callable[[AsyncSession, _Event, Call, str], Any]
_HANDLERS: Final[dict[str, _Handler]] = {
    "call_created": _on_created,
    "call_started": _on_started,
    "transcript": _on_transcript,
    "agent_said": _on_agent_said,
    "turn": _on_turn,
    "recording_ready": _on_recording,
    "call_status": _on_status,
    "call_rejected": _on_rejected,
    "call_ended": _on_ended,
}


# --- webhooks ---------------------------------------------------------------------------------


def subscribed(event_types: Any, event_type: str) -> bool:
    """An endpoint with no event types (or "*") receives every public event."""
    if not event_types:
        return True
    return isinstance(event_types, list) and ("*" in event_types or event_type in event_types)


async def _enqueue(session: AsyncSession, event: _Event, event_type: str, data: dict[str, Any]) -> None:
    endpoints = (await session.execute(
        scoped_select(WebhookEndpoint, event.scope)
        .where(WebhookEndpoint.enabled.is_(True))
        .with_only_columns(WebhookEndpoint.id, WebhookEndpoint.event_types)
    )).all()
    targets = [row.id for row in endpoints if subscribed(row.event_types, event_type)]
    if not targets:
        return
    # Standard Webhooks payload shape: {type, timestamp, data}; redacted like everything stored.
    payload = {
        "type": event_type,
        "timestamp": iso(event.occurred),
        "data": redact_payload({"call_id": str(event.call_id), **data}, pii=event.pii, keep=_KEEP_KEYS),
    }
    result = await session.execute(
        insert(WebhookDelivery)
        .values([
            {
                "id": uuid.uuid4(), "region": event.scope.region, "tenant_id": event.scope.tenant_id,
                "endpoint_id": endpoint_id, "event_id": event.env.event_id, "event_type": event_type,
                "payload": payload, "status": "pending", "attempts": 0, "next_attempt_at": func.now(),
            }
            for endpoint_id in targets
        ])
        .on_conflict_do_nothing(index_elements=["region", "endpoint_id", "event_id"])
        .returning(WebhookDelivery.id)
    )
    event.deliveries += len(result.all())


def _offset_ms(call: Call, at: datetime) -> int:
    started = call.started_at
    if started is None:
        return 0
    return max(0, min(int((at - started).total_seconds() * 1000), INT32_MAX))
