"""Applying call events to the database: rows per kind, idempotency, usage, rejection, ordering,
malformed data, redaction. How a call ends: test_event_ingest_endings.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from ingest_world import T0, World, deliveries, env, ingest, lifecycle, open_world, rows, snapshot
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cells.contract.envelope import CallEventEnvelope, call_id_for_sid
from control.db.models import (
    Agent,
    Call,
    CallEvent,
    Recording,
    Turn,
    UsageRecord,
)
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, unscoped
from control.events import EventRejected, IngestOutcome, amount_micros


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with open_world() as w:
        yield w



def test_each_kind_lands_in_its_rows(world: World) -> None:
    scope, call_id = world.scopes["eu"], call_id_for_sid("CA123")
    for envelope in lifecycle(scope, call_id, world.agent_id):
        assert ingest(world, envelope, stream_region="eu") is IngestOutcome.APPLIED

    [call] = rows(world, scope, Call, call_id)
    assert (call.direction, call.from_e164, call.to_e164) == ("inbound", "+4915112345678", "+442071234567")
    assert call.agent_id == world.agent_id and call.carrier_call_sid == "CA123"
    assert call.status == "completed" and call.disposition == "booked"
    assert call.ended_at is not None and call.ended_at.timestamp() == pytest.approx(T0 + 12.3)

    turns = sorted(rows(world, scope, Turn, call_id), key=lambda t: t.seq)
    assert [(t.seq, t.speaker, t.text, t.interrupted) for t in turns] == [
        (1, "caller", "hello", False), (2, "agent", "hi there", True)]
    assert (turns[1].start_ms, turns[1].end_ms) == (3500, 4200)
    assert turns[0].start_ms == 3000  # no times given: offset from the call's start

    assert len(call.latency["turns"]) == 2
    assert all("caller_text" not in t and "agent_text" not in t for t in call.latency["turns"])
    assert call.latency["summary"]["voice_to_voice_ms"] == {"p50": 420.0, "p95": 780.0, "max": 780.0}

    [rec] = rows(world, scope, Recording, call_id)
    assert rec.object_key == f"{scope.tenant_id}/{call_id}.wav" and rec.duration_ms == 12300
    assert rec.size_bytes == 196_800
    [usage] = rows(world, scope, UsageRecord, call_id)
    assert usage.billable_seconds == 13 and usage.currency == "USD"
    assert usage.amount_micros == amount_micros(13, "starter") == 19_500
    assert len(rows(world, scope, CallEvent, call_id)) == 10

    got = deliveries(world, scope, call_id)
    to_all = [d.event_type for d in got if d.endpoint_id == world.all_endpoint]
    assert to_all == ["call.created", "call.started", "call.transcript", "call.transcript",
                      "recording.ready", "call.ended"]
    assert [d.event_type for d in got if d.endpoint_id == world.ended_endpoint] == ["call.ended"]
    assert len(got) == 7  # nothing for the disabled endpoint
    ended = next(d for d in got if d.event_type == "call.ended" and d.endpoint_id == world.all_endpoint)
    assert ended.event_id == f"{call_id}:MZstream1:9" and ended.status == "pending" and ended.attempts == 0
    assert ended.payload["type"] == "call.ended" and ended.payload["timestamp"].endswith("Z")
    assert ended.payload["data"]["call_id"] == str(call_id)
    assert ended.payload["data"]["disposition"] == "booked" and ended.payload["data"]["duration_s"] == 13


def test_a_duplicate_event_changes_nothing(world: World) -> None:
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    events = lifecycle(scope, call_id, world.agent_id)
    for envelope in events:
        ingest(world, envelope)
    before = snapshot(world, scope, call_id)
    # Every event again: a redelivery, or a re-publish past the stream's duplicate window.
    for envelope in events:
        assert ingest(world, envelope) is IngestOutcome.DUPLICATE
    # Same id, different body (a buggy publisher): still the first one wins.
    again = env(scope, call_id, "agent_said", events[4].event_id, {"text": "other", "interrupted": False})
    assert ingest(world, again) is IngestOutcome.DUPLICATE
    assert snapshot(world, scope, call_id) == before


def test_one_usage_record_per_call_even_with_two_call_ended(world: World) -> None:
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    ingest(world, env(scope, call_id, "call_created", f"{c}:created", {"direction": "inbound"}))
    ingest(world, env(scope, call_id, "call_ended", f"{c}:MZa:9",
                      {"disposition": "transfer", "duration_s": 61}, at=T0 + 61))
    # A resumed call's second worker also ends it, with its own event id.
    ingest(world, env(scope, call_id, "call_ended", f"{c}:MZb:4", {"disposition": "other", "duration_s": 90},
                      at=T0 + 90))
    [usage] = rows(world, scope, UsageRecord, call_id)
    assert usage.billable_seconds == 61 and usage.amount_micros == 91_500
    [call] = rows(world, scope, Call, call_id)
    assert call.disposition == "transfer" and call.ended_at.timestamp() == pytest.approx(T0 + 61)
    ended = [d for d in deliveries(world, scope, call_id) if d.event_type == "call.ended"]
    assert len(ended) == 2 and {d.event_id for d in ended} == {f"{c}:MZa:9"}  # one per endpoint


def test_status_callback_bills_when_no_worker_ends_the_call(world: World) -> None:
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    ingest(world, env(scope, call_id, "call_created", f"{c}:created", {"direction": "outbound"}))
    ingest(world, env(scope, call_id, "call_status", f"{c}:status:completed",
                      {"call_status": "completed", "call_duration": 7}, at=T0 + 7))
    ingest(world, env(scope, call_id, "call_status", f"{c}:status:ringing", {"call_status": "ringing"}))
    ingest(world, env(scope, call_id, "call_ended", f"{c}:MZ:3", {"disposition": "x", "duration_s": 9.5}))
    [call] = rows(world, scope, Call, call_id)
    assert call.status == "completed"  # a late "ringing" never moves the call back
    assert call.ended_at.timestamp() == pytest.approx(T0 + 7)
    [usage] = rows(world, scope, UsageRecord, call_id)
    assert usage.billable_seconds == 7


def test_rejected_events_write_nothing(world: World) -> None:
    eu, us = world.scopes["eu"], world.scopes["us"]
    call_id = uuid.uuid4()
    c = str(call_id)
    with pytest.raises(EventRejected, match="homed in 'eu'"):
        ingest(world, env(eu, call_id, "call_created", f"{c}:created", region="us"))
    with pytest.raises(EventRejected, match="unknown tenant"):
        ingest(world, env(eu, call_id, "call_created", f"{c}:created", tenant=uuid.uuid4()))
    with pytest.raises(EventRejected, match="stream"):
        ingest(world, env(us, call_id, "call_created", f"{c}:created"), stream_region="eu")
    with pytest.raises(EventRejected, match="object key"):
        ingest(world, env(eu, call_id, "recording_ready", f"{c}:MZ:1", {"object_key": "../etc/passwd"}))
    for scope in (eu, us):
        assert rows(world, scope, Call, call_id) == []
        assert rows(world, scope, CallEvent, call_id) == []


def test_out_of_order_events_are_kept(world: World) -> None:
    scope, call_id = world.scopes["in"], uuid.uuid4()
    c = str(call_id)
    # The worker's events overtake the control plane's call_created.
    ingest(world, env(scope, call_id, "transcript", f"{c}:MZ:2", {"text": "namaste", "turn": 1}, at=T0 + 2))
    ingest(world, env(scope, call_id, "call_started", f"{c}:MZ:1", {"call_sid": "CA9", "resumed": False},
                      at=T0 + 1))
    [call] = rows(world, scope, Call, call_id)
    assert (call.direction, call.from_e164, call.status) == ("inbound", "", "in_progress")
    assert call.carrier_call_sid == "CA9"
    ingest(world, env(scope, call_id, "call_created", f"{c}:created",
                      {"direction": "outbound", "from": "+912212345678", "to": "+919812345678",
                       "agent_id": str(uuid.uuid4()), "call_sid": "CA9"}))
    [call] = rows(world, scope, Call, call_id)
    assert (call.direction, call.from_e164, call.to_e164) == ("outbound", "+912212345678", "+919812345678")
    assert call.status == "in_progress" and call.agent_id is None  # an unknown agent is not referenced
    assert [t.text for t in rows(world, scope, Turn, call_id)] == ["namaste"]
    assert len(rows(world, scope, CallEvent, call_id)) == 3


def test_queued_outbound_row_is_completed_by_call_created(world: World) -> None:
    scope, call_id = world.scopes["us"], uuid.uuid4()

    async def queue(session: AsyncSession) -> None:
        session.add(scope.new(Call, id=call_id, direction="outbound", from_e164="+12025550100",
                              to_e164="+12025550199", status="queued"))

    world.db.run(run_transaction(world.db.sessions, queue, scope=scope))
    ingest(world, env(scope, call_id, "call_created", f"{call_id}:created",
                      {"direction": "outbound", "from": "+12025550100", "to": "+12025550199",
                       "call_sid": "CA77"}))
    [call] = rows(world, scope, Call, call_id)
    assert (call.status, call.carrier_call_sid, call.direction) == ("queued", "CA77", "outbound")
    ingest(world, env(scope, call_id, "call_status", f"{call_id}:status:in-progress",
                      {"call_status": "in-progress"}))
    assert rows(world, scope, Call, call_id)[0].status == "in_progress"


def test_every_tenant_writes_only_its_region(world: World) -> None:
    call_ids = {label: uuid.uuid4() for label in world.scopes}
    for label, scope in world.scopes.items():
        ingest(world, env(scope, call_ids[label], "call_created", f"{call_ids[label]}:created"),
               stream_region=scope.region)

    async def regions(session: AsyncSession) -> dict[uuid.UUID, str]:
        stmt = unscoped(select(Call.id, Call.region).where(Call.id.in_(call_ids.values())), "test audit")
        return {row.id: row.region for row in await session.execute(stmt)}

    found = world.db.run(run_transaction(world.db.sessions, regions))
    assert found == {call_ids[label]: scope.region for label, scope in world.scopes.items()}

    async def count(session: AsyncSession) -> int:
        return int(await session.scalar(unscoped(
            select(func.count()).select_from(CallEvent).where(CallEvent.call_id.in_(call_ids.values())),
            "test audit")) or 0)

    assert world.db.run(run_transaction(world.db.sessions, count)) == 3


# --- malformed data inside a well-formed envelope ---------------------------------------------------


DEEP: dict[str, Any] = {}
_node = DEEP
for _ in range(40):
    _node["x"] = {}
    _node = _node["x"]


@pytest.mark.parametrize(("kind", "data"), [
    ("recording_ready", {"object_key": "t/a.wav", "paused_segments": "0-1000"}),
    ("recording_ready", {"object_key": "t/a.wav", "paused_segments": 5}),
    ("recording_ready", {"object_key": "t/a.wav", "paused_segments": {"start_ms": 1}}),
    ("recording_ready", {"object_key": "t/a.wav", "paused_segments": [[1]]}),
    ("recording_ready", {"object_key": "t/a.wav", "paused_segments": [["a", "b"]]}),
    ("recording_ready", {"object_key": "t/a.wav", "paused_segments": [{"start_ms": -1, "end_ms": 2}]}),
    ("recording_ready", {"object_key": "t/a.wav", "size_bytes": "1kb"}),
    ("recording_ready", {"object_key": 7}),
    ("turn", {"ms_after_speech_end": [420.0]}),
    ("turn", {"ms_after_speech_end": "fast"}),
    ("turn", {"ms_after_speech_end": {"first_frame_sent": "420"}}),
    ("turn", {"voice_to_voice_ms": {"p50": 1}}),
    ("transcript", {"text": 5}),
    ("transcript", {"text": "hi", "ignored": "no"}),
    ("transcript", {"text": "hi", "start_ms": "10"}),
    ("agent_said", {"text": "hi", "interrupted": "yes"}),
    ("agent_said", {"text": ["hi"]}),
    ("call_started", {"resumed": "false"}),
    ("call_started", {"call_sid": 123}),
    ("call_created", {"from": 4915112345678}),
    ("call_created", {"agent_id": 5}),
    ("call_created", {"direction": ["inbound"]}),
    ("call_status", {"call_status": 5}),
    ("call_status", {"call_status": "completed", "call_duration": "7"}),
    ("call_ended", {"duration_s": "12"}),
    ("call_ended", {"disposition": {"a": 1}}),
    ("call_ended", {"turns": True}),
    ("call_rejected", {}),
    ("call_rejected", {"reason": 1}),
    ("tool_call", {"arguments": {"n": float("nan")}}),
    ("tool_call", {"deep": DEEP}),
])
def test_malformed_data_is_rejected_and_writes_nothing(world: World, kind: str, data: dict[str, Any]) -> None:
    scope, call_id = world.scopes["us"], uuid.uuid4()
    with pytest.raises(EventRejected) as err:
        ingest(world, env(scope, call_id, kind, f"{call_id}:MZ:1", data))
    assert "5" not in str(err.value) and "yes" not in str(err.value)  # the reason, not the content
    assert rows(world, scope, Call, call_id) == [] and rows(world, scope, CallEvent, call_id) == []


def test_text_the_database_cannot_store_is_cleaned(world: World) -> None:
    scope, call_id = world.scopes["us"], uuid.uuid4()
    ingest(world, env(scope, call_id, "transcript", f"{call_id}:MZ:1", {"text": "a\x00b \ud800c"}))
    [turn] = rows(world, scope, Turn, call_id)
    assert turn.text == "ab ?c"
    [event] = rows(world, scope, CallEvent, call_id)
    assert event.payload["text"] == "ab ?c"


def test_paused_segments_are_stored(world: World) -> None:
    scope, call_id = world.scopes["us"], uuid.uuid4()
    segments = [[1000, 5000], {"start_ms": 7000, "end_ms": 9000.5}]
    ingest(world, env(scope, call_id, "recording_ready", f"{call_id}:MZ:1",
                      {"object_key": f"{scope.tenant_id}/r.wav", "paused_segments": segments}))
    [rec] = rows(world, scope, Recording, call_id)
    assert rec.paused_segments == segments


# --- redaction before anything is stored or sent ---------------------------------------------------


CARD_SPOKEN = "four two four two four two four two four two four two four two four two"


def agent_with(w: World, scope: TenantScope, compliance: dict[str, Any]) -> uuid.UUID:
    async def add(session: AsyncSession) -> uuid.UUID:
        agent = scope.new(Agent, id=uuid.uuid4(), name="Front desk", compliance=compliance)
        session.add(agent)
        return agent.id

    return w.db.run(run_transaction(w.db.sessions, add, scope=scope))


def said_on_a_call(w: World, agent_id: uuid.UUID | None) -> tuple[uuid.UUID, list[CallEventEnvelope]]:
    scope, call_id = w.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    events = [
        env(scope, call_id, "call_created", f"{c}:created", {
            "direction": "inbound", "from": "+4915112345678", "to": "+442071234567",
            "agent_id": str(agent_id) if agent_id else None, "call_sid": "CA99f00d"}),
        env(scope, call_id, "transcript", f"{c}:MZ:1",
            {"text": f"my card is {CARD_SPOKEN} and the security code is one two three"}, at=T0 + 1),
        env(scope, call_id, "agent_said", f"{c}:MZ:2",
            {"text": "thanks and your number is oh seven seven double nine one two three four five six",
             "interrupted": False}, at=T0 + 2),
        env(scope, call_id, "transcript", f"{c}:MZ:3",
            {"text": "yes and my email is anna dot b at gmail dot com see you at ten thirty"}, at=T0 + 3),
        env(scope, call_id, "dtmf", f"{c}:MZ:4", {"digits": "4242424242424242#"}, at=T0 + 4),
        env(scope, call_id, "tool_call", f"{c}:MZ:5", {"name": "take_payment", "arguments": {
            "card_number": "4242 4242 4242 4242", "cvv": "123", "phone": "07799123456"}}, at=T0 + 5),
        env(scope, call_id, "turn", f"{c}:MZ:6",
            {"caller_text": f"card {CARD_SPOKEN}", "voice_to_voice_ms": 400}, at=T0 + 6),
    ]
    for envelope in events:
        ingest(w, envelope)
    return call_id, events


def everything_stored(w: World, call_id: uuid.UUID) -> str:
    scope = w.scopes["eu"]
    parts = [t.text for t in rows(w, scope, Turn, call_id)]
    parts += [str(e.payload) for e in rows(w, scope, CallEvent, call_id)]
    parts += [str(d.payload) for d in deliveries(w, scope, call_id)]
    parts += [str(rows(w, scope, Call, call_id)[0].latency)]
    return "\n".join(parts)


def test_card_numbers_and_pii_are_redacted_by_default(world: World) -> None:
    call_id, _ = said_on_a_call(world, world.agent_id)  # the seeded agent has no redact_pii setting
    scope = world.scopes["eu"]
    turns = [t.text for t in sorted(rows(world, scope, Turn, call_id), key=lambda t: t.seq)]
    assert turns == [
        "my card is [card] and the security code is [cvv]",
        "thanks and your number is [phone]",
        "yes and my email is [email] see you at ten thirty",
    ]
    stored = everything_stored(world, call_id)
    for secret_bit in ("4242", "four two four two", "one two three", "seven seven", "anna", "07799"):
        assert secret_bit not in stored, secret_bit
    events = {e.kind: e.payload for e in rows(world, scope, CallEvent, call_id)}
    assert events["dtmf"] == {"digits": "[card]#"}
    assert events["tool_call"]["arguments"] == {"card_number": "[card]", "cvv": "[cvv]", "phone": "[phone]"}
    # Identifiers and the call's own numbers are kept (they are in the call row anyway).
    assert events["call_created"]["from"] == "+4915112345678"
    assert events["call_created"]["call_sid"] == "CA99f00d"
    transcripts = [d.payload["data"]["text"] for d in deliveries(world, scope, call_id)
                   if d.event_type == "call.transcript"]
    assert transcripts[0] == "my card is [card] and the security code is [cvv]"


def test_an_agent_may_switch_pii_redaction_off_but_never_card_redaction(world: World) -> None:
    agent_id = agent_with(world, world.scopes["eu"], {"redact_pii": False})
    call_id, _ = said_on_a_call(world, agent_id)
    scope = world.scopes["eu"]
    turns = [t.text for t in sorted(rows(world, scope, Turn, call_id), key=lambda t: t.seq)]
    assert turns == [
        "my card is [card] and the security code is [cvv]",
        "thanks and your number is oh seven seven double nine one two three four five six",
        "yes and my email is anna dot b at gmail dot com see you at ten thirty",
    ]
    stored = everything_stored(world, call_id)
    assert "4242" not in stored and "four two four two" not in stored
    events = {e.kind: e.payload for e in rows(world, scope, CallEvent, call_id)}
    assert events["tool_call"]["arguments"]["phone"] == "07799123456"


def test_call_created_records_the_agent_version_the_call_runs(world: World) -> None:
    scope = world.scopes["eu"]
    agent_id = agent_with(world, scope, {})
    for version, stored in ((3, 3), (None, None), ("3", None), (True, None), (0, None)):
        call_id = uuid.uuid4()
        ingest(world, env(scope, call_id, "call_created", f"{call_id}:created",
                          {"direction": "inbound", "agent_id": str(agent_id), "agent_version": version}))
        [call] = rows(world, scope, Call, call_id)
        assert (call.agent_id, call.agent_version) == (agent_id, stored), version
