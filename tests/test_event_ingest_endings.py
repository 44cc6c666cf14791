"""The end of a call, whichever end event comes first: worker, carrier status, rejection, failed resume."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from ingest_world import T0, World, deliveries, env, ingest, lifecycle, open_world, rows, snapshot

from control.db.models import (
    Call,
    CallEvent,
    Turn,
    UsageRecord,
    WebhookDelivery,
)
from control.db.tenancy import TenantScope


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with open_world() as w:
        yield w


def ended_deliveries(w: World, scope: TenantScope, call_id: uuid.UUID) -> list[WebhookDelivery]:
    return [d for d in deliveries(w, scope, call_id) if d.event_type == "call.ended"]


@pytest.mark.parametrize(("twilio", "status", "disposition"), [
    ("busy", "busy", "busy"),
    ("no-answer", "no_answer", "no_answer"),
    ("failed", "failed", "failed"),
    ("canceled", "canceled", "canceled"),
])
def test_a_terminal_status_without_a_worker_ends_the_call(
    world: World, twilio: str, status: str, disposition: str
) -> None:
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    ingest(world, env(scope, call_id, "call_created", f"{c}:created", {"direction": "outbound"}))
    ingest(world, env(scope, call_id, "call_status", f"{c}:status:ringing", {"call_status": "ringing"},
                      at=T0 + 1))
    ingest(world, env(scope, call_id, "call_status", f"{c}:status:{twilio}", {"call_status": twilio},
                      at=T0 + 20))
    [call] = rows(world, scope, Call, call_id)
    assert (call.status, call.disposition) == (status, disposition)
    assert call.ended_at.timestamp() == pytest.approx(T0 + 20)
    assert rows(world, scope, UsageRecord, call_id) == []  # no duration: nothing to bill
    ended = ended_deliveries(world, scope, call_id)
    assert len(ended) == 2 and {d.event_id for d in ended} == {f"{c}:status:{twilio}"}  # one per endpoint
    data = ended[0].payload["data"]
    assert (data["status"], data["disposition"], data["duration_s"], data["turns"]) == (
        status, disposition, 0, 0)

    # A late call_ended (or a replay) changes nothing: the first end wins.
    ingest(world, env(scope, call_id, "call_ended", f"{c}:MZ:9", {"disposition": "booked", "duration_s": 30},
                      at=T0 + 30))
    [call] = rows(world, scope, Call, call_id)
    assert (call.status, call.disposition) == (status, disposition)
    assert call.ended_at.timestamp() == pytest.approx(T0 + 20)
    assert rows(world, scope, UsageRecord, call_id) == []
    assert len(ended_deliveries(world, scope, call_id)) == 2
    assert len(rows(world, scope, CallEvent, call_id)) == 4  # the late one is kept as an event


def test_completed_status_first_then_call_ended_bills_and_notifies_once(world: World) -> None:
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    ingest(world, env(scope, call_id, "call_created", f"{c}:created", {"direction": "inbound"}))
    ingest(world, env(scope, call_id, "transcript", f"{c}:MZ:1", {"text": "hello"}, at=T0 + 2))
    ingest(world, env(scope, call_id, "call_status", f"{c}:status:completed",
                      {"call_status": "completed", "call_duration": 42}, at=T0 + 42))
    ingest(world, env(scope, call_id, "call_ended", f"{c}:MZ:2",
                      {"disposition": "booked", "turns": 1, "duration_s": 41.2}, at=T0 + 43))
    [call] = rows(world, scope, Call, call_id)
    # The worker's reason replaces the carrier's guess; the end, the bill and the webhook stay the first.
    assert (call.status, call.disposition) == ("completed", "booked")
    assert call.ended_at.timestamp() == pytest.approx(T0 + 42)
    [usage] = rows(world, scope, UsageRecord, call_id)
    assert usage.billable_seconds == 42
    ended = ended_deliveries(world, scope, call_id)
    assert {d.event_id for d in ended} == {f"{c}:status:completed"} and len(ended) == 2
    assert ended[0].payload["data"]["duration_s"] == 42 and ended[0].payload["data"]["turns"] == 1


def test_call_ended_first_then_completed_status_changes_nothing(world: World) -> None:
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    ingest(world, env(scope, call_id, "call_created", f"{c}:created", {"direction": "inbound"}))
    ingest(world, env(scope, call_id, "call_ended", f"{c}:MZ:5",
                      {"disposition": "booked", "turns": 4, "duration_s": 30}, at=T0 + 30))
    before = snapshot(world, scope, call_id)
    ingest(world, env(scope, call_id, "call_status", f"{c}:status:completed",
                      {"call_status": "completed", "call_duration": 33}, at=T0 + 33))
    after = snapshot(world, scope, call_id)
    assert after["call"] == before["call"] and after["usage"] == before["usage"] == [(30, 45_000)]
    assert after["deliveries"] == before["deliveries"]
    assert before["call"][:2] == ("completed", "booked")


def test_a_rejected_call_fails_without_usage(world: World) -> None:
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    ingest(world, env(scope, call_id, "call_created", f"{c}:created", {"direction": "inbound"}))
    ingest(world, env(scope, call_id, "call_rejected", f"{c}:rejected", {"reason": "no_worker"}, at=T0 + 1))
    # The caller heard the busy message, then Twilio reports the (billed by Twilio) call as completed.
    ingest(world, env(scope, call_id, "call_status", f"{c}:status:completed",
                      {"call_status": "completed", "call_duration": 6}, at=T0 + 6))
    [call] = rows(world, scope, Call, call_id)
    assert (call.status, call.disposition) == ("failed", "no_worker")
    assert call.ended_at.timestamp() == pytest.approx(T0 + 1)
    assert rows(world, scope, UsageRecord, call_id) == []
    ended = ended_deliveries(world, scope, call_id)
    assert {d.event_id for d in ended} == {f"{c}:rejected"} and len(ended) == 2
    assert ended[0].payload["data"]["status"] == "failed"
    assert ended[0].payload["data"]["disposition"] == "no_worker"


def test_a_call_dropped_with_no_worker_to_resume_it_is_ended_billed_and_counted(world: World) -> None:
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    # The worker publishes the call up to its first answer, then dies; no worker takes it over.
    for event in lifecycle(scope, call_id, uuid.uuid4())[:5]:
        ingest(world, event)
    ingest(world, env(scope, call_id, "call_ended", f"{c}:resume-failed",
                      {"disposition": "dropped_no_worker"}, at=T0 + 21))
    ingest(world, env(scope, call_id, "call_status", f"{c}:status:completed",
                      {"call_status": "completed", "call_duration": 24}, at=T0 + 24))
    [call] = rows(world, scope, Call, call_id)
    assert (call.status, call.disposition) == ("completed", "dropped_no_worker")
    # The caller was on the line from the call's start to the drop: that is billed, once.
    assert [u.billable_seconds for u in rows(world, scope, UsageRecord, call_id)] == [21]
    ended = ended_deliveries(world, scope, call_id)
    assert ended and {d.event_id for d in ended} == {f"{c}:resume-failed"}
    assert ended[0].payload["data"]["turns"] == len(rows(world, scope, Turn, call_id)) >= 2


def test_a_stale_rejection_never_ends_a_call_a_worker_has_started(world: World) -> None:
    # A retried webhook reached a second worker whose reservation then ran out unused.
    scope, call_id = world.scopes["eu"], uuid.uuid4()
    c = str(call_id)
    for event in lifecycle(scope, call_id, uuid.uuid4())[:3]:
        ingest(world, event)
    ingest(world, env(scope, call_id, "call_rejected", f"{c}:rejected", {"reason": "stream_never_connected"},
                      at=T0 + 31))
    [call] = rows(world, scope, Call, call_id)
    assert (call.status, call.disposition, call.ended_at) == ("in_progress", None, None)
    assert ended_deliveries(world, scope, call_id) == []
    ingest(world, env(scope, call_id, "call_ended", f"{c}:MZstream1:9", {"disposition": "booked"},
                      at=T0 + 40))
    [call] = rows(world, scope, Call, call_id)
    assert (call.status, call.disposition) == ("completed", "booked")


def test_a_rejected_call_with_no_created_event_is_still_recorded(world: World) -> None:
    scope, call_id = world.scopes["in"], uuid.uuid4()
    ingest(world, env(scope, call_id, "call_rejected", f"{call_id}:rejected", {"reason": "agent_missing"}))
    [call] = rows(world, scope, Call, call_id)
    assert (call.status, call.disposition) == ("failed", "agent_missing") and call.ended_at is not None
