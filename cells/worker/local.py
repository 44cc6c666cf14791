"""The embedded worker's stand-ins for what a cell's worker gets from NATS: the call's lease (one
worker, nothing to share, its state in memory) and its event stream (the call record on disk,
cells.worker.calls). With them the embedded worker runs the same sink as a cell's (cells.worker.sink)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from cells.contract.redaction import CallRedactor
from cells.providers.base import Message
from cells.worker.calls import CallRecord


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
        return None
