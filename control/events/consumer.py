"""The control plane's durable consumer of its region's call event stream.

One pull consumer per region (durable "control-<region>", explicit ack): every message is applied
through `ingest_event` and acknowledged only after its transaction committed, so a crash between the
two redelivers the message and the unique event row turns the second application into a no-op.
Malformed or foreign messages are terminated (never retried); database failures are nak'ed with a
growing delay, bounded by max_deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.coordination.envelope import CallEventEnvelope, EnvelopeError
from cells.launcher.jetstream import call_stream_name, ensure_call_stream
from control.events.ingest import EventRejected, IngestOutcome, ingest_event
from regions.catalogue import get_region

log = logging.getLogger(__name__)

__all__ = ["ConsumerStats", "EventConsumer", "durable_name"]

Ingest = Callable[[async_sessionmaker[AsyncSession], CallEventEnvelope], Awaitable[IngestOutcome]]

# An integrity error (a row the schema refuses) will not fix itself: a few tries, then terminate.
_INTEGRITY_TRIES: Final = 3


def durable_name(region: str) -> str:
    return f"control-{get_region(region).code}"


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0  # malformed, foreign or unusable: terminated
    retried: int = 0  # nak'ed for redelivery (database trouble)
    given_up: int = 0  # terminated after the last allowed delivery
    fetch_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class EventConsumer:
    """Apply the call events of `region` to the database; `start()` it, `stop()` drains it.

    `nc` is a connected NATS client of the region, or its JetStream context (with reconnects enabled:
    the consumer keeps fetching across a server restart). Events of one call are applied in stream
    order because the loop handles one message at a time; run more instances (same durable) to share
    the load.
    """

    def __init__(
        self,
        nc: Client | JetStreamContext,
        sessions: async_sessionmaker[AsyncSession],
        region: str,
        *,
        durable: str | None = None,
        batch: int = 64,
        fetch_timeout: float = 1.0,
        ack_wait: float = 30.0,
        max_deliver: int = 30,
        nak_delay: float = 1.0,
        max_nak_delay: float = 120.0,
        ingest: Ingest | None = None,
    ) -> None:
        if batch < 1 or max_deliver < 2:
            raise ValueError("batch must be >= 1 and max_deliver >= 2")
        self.region = get_region(region).code
        if isinstance(nc, JetStreamContext):
            # nats-py keeps the client of a JetStream context only as `_nc`; we need it for health and flush.
            self._js, self.nc = nc, nc._nc
        else:
            self.nc, self._js = nc, nc.jetstream()
        self.sessions = sessions
        self.durable = durable or durable_name(self.region)
        self.stream = call_stream_name(self.region)
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.nak_delay = nak_delay
        self.max_nak_delay = max_nak_delay
        self._ingest: Ingest = ingest or (lambda s, env: ingest_event(s, env, stream_region=self.region))
        self.stats = ConsumerStats()
        self._sub: JetStreamContext.PullSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Declare the stream and the durable consumer, then run the fetch loop.

        If NATS is unreachable right now the loop keeps trying, so a cell can start before its server.
        """
        if self._task is not None:
            raise RuntimeError("consumer already started")
        self._stopping.clear()
        try:
            await self._subscribe()
        except Exception as exc:
            log.warning("event consumer %s: cannot subscribe yet (%s); retrying in the background",
                        self.durable, type(exc).__name__)
        self._task = asyncio.create_task(self._run(), name=f"event-consumer-{self.region}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the message in hand (ack or nak it), stop fetching and drop the subscription.

        Unacknowledged messages of the current batch stay with the server and are redelivered
        after ack_wait; the durable consumer itself remains, so the next start resumes there.
        """
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            # asyncio.wait, not wait_for: a loop that already died must not make stop() raise.
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                log.warning("event consumer %s did not drain in %.0fs; cancelling", self.durable, timeout)
                task.cancel()
                await asyncio.wait({task})
            elif not task.cancelled() and task.exception() is not None:
                log.error("event consumer %s had died: %s", self.durable, type(task.exception()).__name__)
        if self.nc.is_connected:
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)  # the last acks leave before the caller closes
        await self._unsubscribe()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def health(self) -> dict[str, Any]:
        return {"running": self.running, "connected": self.nc.is_connected, "durable": self.durable,
                **self.stats.as_dict()}

    # -- subscription ----------------------------------------------------------------------------

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            filter_subject=f"{self.region}.calls.>",
            # Bounds what one slow instance can hold back from the others.
            max_ack_pending=max(1000, self.batch * 4),
        )

    async def _subscribe(self) -> None:
        await ensure_call_stream(self._js, self.region)
        try:
            # Create, or update the editable settings (ack_wait, max_deliver, ...) of an existing one.
            await self._js.add_consumer(self.stream, self.consumer_config())
        except BadRequestError as exc:
            # A setting the server cannot change in place: keep consuming with the existing consumer.
            log.warning("event consumer %s: kept the existing consumer config (%s)", self.durable,
                        exc.description)
        self._sub = await self._js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- loop ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self._sub is None:
                    await self._subscribe()
                msgs = await self._sub.fetch(self.batch, timeout=self.fetch_timeout)  # type: ignore[union-attr]
            except NatsTimeoutError:
                failures = 0
                continue  # nothing to do
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost server, a missing consumer: back off and retry
                failures += 1
                self.stats.fetch_errors += 1
                log.warning("event consumer %s: fetch failed (%s); retrying", self.durable,
                            type(exc).__name__)
                if failures >= 3:
                    # The consumer or stream may be gone (a wiped server): declare them again.
                    await self._unsubscribe()
                await self._pause(min(5.0, 0.1 * 2 ** min(failures, 6)))
                continue
            failures = 0
            for index, msg in enumerate(msgs):
                if self._stopping.is_set():
                    # Stopping: hand the rest back now, so another instance need not wait for ack_wait.
                    for rest in msgs[index:]:
                        with contextlib.suppress(Exception):
                            await rest.nak()
                    break
                if not await self._handle(msg):
                    # The database is in trouble: hand the rest back rather than fail them one by one,
                    # and give it a moment before fetching again.
                    for rest in msgs[index + 1:]:
                        with contextlib.suppress(Exception):
                            await rest.nak(delay=self._delay(rest))
                    await self._pause(self.nak_delay)
                    break

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _handle(self, msg: Msg) -> bool:
        """Apply, then ack / term / nak one message; False means the database is unavailable."""
        try:
            envelope = CallEventEnvelope.from_bytes(msg.data)
            if envelope.region != self.region:
                raise EventRejected(f"event of region {envelope.region!r}")
            if msg.subject != envelope.subject:
                raise EventRejected("subject does not match the event")
            outcome = await self._ingest(self.sessions, envelope)
        except EnvelopeError:
            # EnvelopeError messages quote field values, so only the fact is logged, with the position.
            return await self._reject(msg, "malformed envelope")
        except EventRejected as exc:
            return await self._reject(msg, str(exc))  # names the reason, never the content
        except IntegrityError:
            return await self._retry(msg, poison=_deliveries(msg) >= _INTEGRITY_TRIES, ok=True)
        except (DBAPIError, OSError, TimeoutError) as exc:
            log.warning("event consumer %s: database error on %s (%s)", self.durable, _position(msg),
                        type(exc).__name__)
            return await self._retry(msg, poison=False, ok=False)
        except Exception:
            # A bug must not stop the region's event pipeline; the message is retried a bounded number
            # of times. The exception text is not logged: it may quote the event's content.
            log.error("event consumer %s: unexpected error on %s", self.durable, _position(msg))
            return await self._retry(msg, poison=False, ok=True)
        if outcome is IngestOutcome.DUPLICATE:
            self.stats.duplicates += 1
        else:
            self.stats.applied += 1
        await _settle(msg.ack())
        return True

    async def _reject(self, msg: Msg, reason: str) -> bool:
        log.warning("event consumer %s: terminated message %s: %s", self.durable, _position(msg), reason)
        self.stats.rejected += 1
        await _settle(msg.term())
        return True

    async def _retry(self, msg: Msg, *, poison: bool, ok: bool) -> bool:
        if poison or _deliveries(msg) >= self.max_deliver:
            log.error("event consumer %s: giving up on %s after %d deliveries", self.durable,
                      _position(msg), _deliveries(msg))
            self.stats.given_up += 1
            await _settle(msg.term())
            return ok
        self.stats.retried += 1
        await _settle(msg.nak(delay=self._delay(msg)))
        return ok

    def _delay(self, msg: Msg) -> float:
        base = min(self.max_nak_delay, self.nak_delay * 2 ** max(0, _deliveries(msg) - 1))
        return base * random.uniform(0.8, 1.2)


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:  # not a JetStream message
        return 1


def _position(msg: Msg) -> str:
    try:
        return f"seq {msg.metadata.sequence.stream}"
    except Exception:
        return "(no metadata)"


async def _settle(ack: Awaitable[None]) -> None:
    # Losing an ack to a connection drop only means a redelivery, which the event row absorbs.
    try:
        await ack
    except Exception as exc:
        log.info("could not settle a message (%s); it will be redelivered", type(exc).__name__)
