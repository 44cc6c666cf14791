"""Publishes one media stream's call events to JetStream, in order, exactly once.

`emit` never blocks the call loop: it builds the envelope (so `occurred_at` is when it happened) and
queues it. One background task publishes the queue in order and waits for each ack. When NATS is
away (a restart, a network cut) the task keeps the event at the head of the queue and retries it with
the same Nats-Msg-Id until the stream acks it: the stream's duplicate window drops a copy whose first
ack was lost, so nothing is lost or doubled, and later events wait behind it, so order holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from typing import Any

from nats.js import JetStreamContext

from cells.contract.call_redaction import CallRedactor
from cells.contract.envelope import CallEventEnvelope, EnvelopeError
from cells.contract.jetstream import publish_event

log = logging.getLogger(__name__)
MAX_QUEUE = 50_000  # events of one stream; a call emits a few per turn, so this spans a long outage


class EventPublisher:
    def __init__(self, js: JetStreamContext, *, call_id: str, tenant_id: str, region: str, stream_sid: str,
                 source: str = "", max_queue: int = MAX_QUEUE, ack_timeout: float = 2.0,
                 retry_wait: float = 0.1, max_retry_wait: float = 2.0,
                 redactor: CallRedactor | None = None) -> None:
        self.js = js
        # Nothing leaves the worker unredacted: card numbers always (also when read across turns),
        # e-mails and phone numbers when the agent asks for it (the caller's redactor knows).
        self.redactor = redactor or CallRedactor(pii=False)
        self.call_id, self.tenant_id, self.region = str(call_id), str(tenant_id), region
        self.stream_sid = stream_sid
        self.source = source
        self.max_queue = max_queue
        self.ack_timeout = ack_timeout
        self.retry_wait, self.max_retry_wait = retry_wait, max_retry_wait
        self.seq = 0
        self.published = 0
        self.dropped = 0  # events refused (malformed, or the queue overflowed)
        self.retries = 0
        self._queue: deque[CallEventEnvelope] = deque()
        # Held while the caller's last input ended with digits the next input may make a card (no card
        # was spoken of, so they were not masked): once the next input tells, they leave masked or not.
        self._held: list[CallEventEnvelope] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def event_id(self, seq: int) -> str:
        return f"{self.call_id}:{self.stream_sid}:{seq}"

    @property
    def pending(self) -> int:
        return len(self._queue)

    def emit(self, kind: str, data: dict[str, Any] | None = None) -> str | None:
        """Queue one event; returns its event id (None if it was refused). Never blocks."""
        if self._closing:
            log.warning("call %s: event %s emitted after close; dropped", self.call_id, kind)
            self.dropped += 1
            return None
        if len(self._queue) >= self.max_queue:
            # Only a very long outage gets here; the newest events go so that the call keeps running.
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("call %s: event queue full (%d); dropped %d events", self.call_id, self.max_queue,
                          self.dropped)
            return None
        try:
            clean = self.redactor.event(kind, data or {})
        except Exception:  # never publish what could not be redacted, and never break the call
            log.exception("call %s: redacting event %s failed; dropped", self.call_id, kind)
            self.dropped += 1
            return None
        self.seq += 1
        try:
            env = CallEventEnvelope.new(call_id=self.call_id, tenant_id=self.tenant_id, region=self.region,
                                        kind=kind, event_id=self.event_id(self.seq), data=clean,
                                        source=self.source)
            env.to_bytes()  # refuse an oversized event here, not at the head of the queue
        except EnvelopeError as exc:
            self.seq -= 1
            self.dropped += 1
            log.error("call %s: event %s refused: %s", self.call_id, kind, exc)
            return None
        if kind == "transcript" and self._held:
            self._release()  # this input decided whether the digits held back were a card's
        if self.redactor.pending or self._held:
            self._held.append(env)
            return env.event_id
        self._queue.append(env)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return env.event_id

    def _release(self) -> None:
        """The held events, with any card (or card piece) the call has heard since masked, queued."""
        for env in self._held:
            self._queue.append(dataclasses.replace(env, data=self.redactor.mask_known(env.data)))
        self._held.clear()
        self._wake.set()

    async def _run(self) -> None:
        wait = self.retry_wait
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            env = self._queue[0]
            try:
                await asyncio.wait_for(
                    publish_event(self.js, env.subject, env.to_bytes(), msg_id=env.event_id, attempts=3),
                    self.ack_timeout + 1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away, no ack, stream moving: the same msg id again later
                self.retries += 1
                if self.retries == 1 or self.retries % 20 == 0:
                    log.warning("call %s: publishing %s failed (%s: %s); retrying", self.call_id,
                                env.event_id, type(exc).__name__, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.max_retry_wait)
                continue
            wait = self.retry_wait
            self._queue.popleft()
            self.published += 1

    async def close(self, timeout: float = 10.0) -> bool:
        """Flush what is queued (up to `timeout` seconds); True when every event was acked."""
        self._closing = True
        if self._held:
            self._release()
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()
        if self._task is None:
            return not self._queue
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            log.error("call %s: %d events not published within %.0f s", self.call_id, len(self._queue),
                      timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            return False
        return not self._queue
