"""The embedded worker's stand-ins for what a cell's worker gets from NATS: the call's lease (one
worker, nothing to share, its state in memory) and its event stream (the call record on disk,
cells.worker.calls). With them the embedded worker runs the same lifecycle and sink as a cell's
(cells.worker.stream, cells.worker.sink); `LocalCalls.run_stream` is Coordination.run_stream's twin."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from cells.call.transport import Transport
from cells.contract.call_redaction import CallRedactor
from cells.contract.call_token import CallClaims
from cells.contract.slots import call_key
from cells.observability import WorkerTelemetry
from cells.providers.base import Message
from cells.worker.assignments import Assignments
from cells.worker.calls import CallLog, CallRecord
from cells.worker.sink import CallSink
from cells.worker.stream import Agent, OnControl, StreamStart, run_call


class LocalLease:
    def __init__(self, call_id: str, agent_id: str) -> None:
        self._call_id = call_id
        self.state: dict[str, Any] = {"agent_id": agent_id, "started_at": time.time(), "recordings": []}
        self.history: list[Message] = []

    @property
    def call_id(self) -> str:
        return self._call_id

    async def save(self, history: Iterable[Message] | None = None, **changes: Any) -> None:
        if history is not None:
            self.history = list(history)
        self.state.update(changes)

    async def end(self, disposition: str, history: Iterable[Message] | None = None) -> None:
        await self.save(history, status="ended", disposition=disposition)

    async def release(self) -> None:
        return None

    def start_heartbeat(self, interval: float | None = None,
                        on_lost: Callable[[], Any] | None = None) -> None:
        return None  # nobody else can take the call over

    def stop_heartbeat(self) -> None:
        return None


class RecordEvents:
    """The call's events into its record, redacted as the record keeps them (booking details, never a
    card); the record itself is written when the call is over (`on_done`)."""

    def __init__(self, record: CallRecord, redactor: CallRedactor | None = None) -> None:
        self.record = record
        self.redactor = redactor or CallRedactor(pii=False)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.record.event(kind, self.redactor.event(kind, data))

    async def close(self, timeout: float = 0.0) -> None:
        # A card completed late in the call is masked in the events that hold its first pieces too.
        self.record.events = self.redactor.mask_known(self.record.events)


class LocalCalls:
    """The embedded worker's streams. Only it keeps call records on disk: a cell's workers are stateless
    (the control plane stores each call from its events) and never write caller data locally."""

    def __init__(self, log: CallLog, assignments: Assignments[Any], telemetry: WorkerTelemetry,
                 worker_id: str) -> None:
        self.log = log
        self.assignments = assignments
        self.telemetry = telemetry
        self.worker_id = worker_id

    async def run_stream(self, transport: Transport, claims: CallClaims, start: StreamStart, agent: Agent,
                         on_control: OnControl) -> None:
        call_id = claims.call_id
        self.assignments.take(call_key(call_id, claims.call_sid))
        record = self.log.open(call_id, claims.tenant_id, claims.agent_id, start.call_sid)
        sink = CallSink(lease=LocalLease(call_id, claims.agent_id), publisher=RecordEvents(record),
                        observer=self.telemetry.call(call_id=call_id, tenant_id=claims.tenant_id,
                                                     agent_id=claims.agent_id),
                        worker_id=self.worker_id, resumable=False,
                        on_done=[record.close])
        await run_call(agent, transport, start, sink, on_control=on_control)
