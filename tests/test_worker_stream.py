"""The one stream lifecycle both workers run (cells.worker.stream) and the one call sink (cells.worker.sink),
here connected to the embedded worker's in-process stand-ins (cells.worker.local)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cells.call.transport import AudioIn, CarrierEvent, DtmfIn, MarkPlayed, StreamStop
from cells.observability import WorkerTelemetry
from cells.providers.base import Message
from cells.worker.calls import CallLog
from cells.worker.local import LocalLease, RecordEvents
from cells.worker.sink import CallSink
from cells.worker.stream import pump


class State:
    ended = False
    disposition = "in_progress"
    bad_messages = 0


class FakeSession:
    def __init__(self, end_on: str | None = None) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.state = State()
        self.end_on = end_on
        self.history = [Message("assistant", "Hello."), Message("user", "Bye.")]
        self.turns: list[Any] = []
        self.stream_sid, self.call_sid = "MZ1", "CA1"
        self.stopped: list[str] = []

    def _saw(self, kind: str, value: Any) -> None:
        self.seen.append((kind, value))
        if kind == self.end_on:
            self.state.ended = True

    def on_media(self, data: Any) -> None:
        self._saw("media", data)

    def on_mark(self, name: str) -> None:
        self._saw("mark", name)

    def on_dtmf(self, digit: str) -> None:
        self._saw("dtmf", digit)

    async def stop(self, disposition: str) -> None:
        self.stopped.append(disposition)
        if self.state.disposition == "in_progress":
            self.state.disposition = disposition


async def events(*items: CarrierEvent) -> AsyncIterator[CarrierEvent]:
    for item in items:
        yield item


def test_pump_dispatches_neutral_events_and_tells_a_hang_up_from_a_drop() -> None:
    session = FakeSession()
    stream = events(AudioIn(b"a"), MarkPlayed("seg-1"), DtmfIn("5"), StreamStop(), AudioIn(b"late"))
    assert asyncio.run(pump(session, stream)) is True  # type: ignore[arg-type]
    assert session.seen == [("media", b"a"), ("mark", "seg-1"), ("dtmf", "5")]
    assert asyncio.run(pump(FakeSession(), events(AudioIn(b"a")))) is False  # type: ignore[arg-type]
    ended = FakeSession(end_on="dtmf")
    assert asyncio.run(pump(ended, events(DtmfIn("1"), AudioIn(b"after")))) is False  # type: ignore[arg-type]
    assert ended.seen == [("dtmf", "1")]


def sink_for(tmp_path: Path, *, resumable: bool, done: list[Any]) -> tuple[CallSink, LocalLease, Any]:
    record = CallLog(tmp_path).open("call-1", "t-1", "agent-1", "CA1")
    lease = LocalLease("call-1", "agent-1")
    sink = CallSink(lease=lease, publisher=RecordEvents(record),
                    observer=WorkerTelemetry(region="eu", capacity=1, active=lambda: 0).call(
                        call_id="call-1", tenant_id="t-1", agent_id="agent-1"),
                    worker_id="w1", resumable=resumable, on_done=[record.close, done.append])
    return sink, lease, record


def test_the_sink_holds_call_ended_until_the_call_is_known_to_have_ended(tmp_path: Path) -> None:
    done: list[Any] = []
    sink, lease, record = sink_for(tmp_path, resumable=True, done=done)
    session = FakeSession()
    sink.session = session  # type: ignore[assignment]

    async def run() -> None:
        sink.event("call_started", {"call_sid": "CA1"})
        sink.event("transcript", {"text": "my card is 4111 1111 1111 1111"})
        sink.event("call_ended", {"disposition": "caller_hung_up"})
        assert [e["kind"] for e in record.events] == ["call_started", "transcript"]  # call_ended held
        await sink.finish(session, caller_hung_up=True)  # type: ignore[arg-type]

    asyncio.run(run())
    kinds = [e["kind"] for e in record.events]
    assert kinds == ["call_started", "transcript", "call_ended"] and "duration_s" in record.events[-1]
    assert record.events[0]["worker_id"] == "w1" and "4111" not in str(record.events[1])
    assert lease.state["status"] == "ended" and lease.state["disposition"] == "caller_hung_up"
    assert done == [session] and (tmp_path / "calls" / "CA1.json").exists()


def test_a_dropped_stream_is_released_in_a_cell_and_ends_the_call_when_embedded(tmp_path: Path) -> None:
    for resumable in (True, False):
        done: list[Any] = []
        sink, lease, record = sink_for(tmp_path / str(resumable), resumable=resumable, done=done)
        session = FakeSession()
        sink.session = session  # type: ignore[assignment]
        sink.event("call_ended", {"disposition": "caller_hung_up"})
        asyncio.run(sink.finish(session, caller_hung_up=False))  # type: ignore[arg-type]
        ended = [e for e in record.events if e["kind"] == "call_ended"]
        if resumable:  # the call may go on on another worker: not ended, its history saved
            assert not ended and "status" not in lease.state and lease.history == session.history
        else:
            assert len(ended) == 1 and lease.state["status"] == "ended"
        assert done == [session]
