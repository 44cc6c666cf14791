"""The control plane's durable consumer of its region's call event stream.

One pull consumer per region (durable "control-<region>", explicit ack): every message is applied
through `apply_event` and acknowledged only after its transaction committed, so a crash between the
two redelivers the message and the unique event row turns the second application into a no-op.

Messages are applied strictly in stream order, one at a time: a call's turns are numbered in the
order they are applied, so no message may overtake another. When the database fails (a lost
connection, a restart, a failover), the same message is retried in place with a capped backoff,
the messages behind it wait (kept alive with in-progress acks), and nothing later is applied until
it lands. Poison is terminated instead: malformed or foreign messages and rejected events at once,
data the database refuses (integrity or data errors) and unexpected errors after a few tries.
Run exactly one consumer per region: two instances on the durable would apply one call's events
concurrently and out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.contract.envelope import CallEventEnvelope, EnvelopeError
from cells.contract.jetstream import call_stream_name, ensure_call_stream
from control.db.session import sqlstate_of
from control.events.ingest import EventRejected, IngestOutcome, IngestResult, apply_event
from regions.catalogue import get_region

log = logging.getLogger(__name__)

__all__ = ["ConsumerStats", "EventConsumer", "durable_name"]

# A custom ingest (tests wrap ingest_event) may return the bare outcome.
Ingest = Callable[
    [async_sessionmaker[AsyncSession], CallEventEnvelope], Awaitable[IngestOutcome | IngestResult]
]

# Poison (data the schema refuses, or a bug) will not fix itself: a few tries, then terminate.
_POISON_TRIES: Final = 3
# SQLSTATE classes that blame the event's data (22 data exception, 23 integrity); any other database
# failure is the environment's (connection, restart, read-only failover, missing table) and waits.
_DATA_SQLSTATES: Final = ("22", "23")
# A database error is logged at its first try and then every this many tries.
_LOG_EVERY: Final = 10


def durable_name(region: str) -> str:
    return f"control-{get_region(region).code}"


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0  # malformed, foreign or unusable: terminated
    retried: int = 0  # tries repeated in place (database trouble, or poison before it is given up)
    given_up: int = 0  # poison terminated after its last try
    fetch_errors: int = 0
    callback_errors: int = 0  # on_applied raised

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class EventConsumer:
    """Apply the call events of `region` to the database; `start()` it, `stop()` drains it.

    `nc` is a connected NATS client of the region, or its JetStream context (with reconnects enabled:
    the consumer keeps fetching across a server restart). One instance per region: the loop applies
    one message at a time, in stream order, which is what keeps each call's turns in order.

    `on_applied` (no arguments, synchronous, e.g. `WebhookDispatcher.wake`) is called after an event
    whose transaction enqueued webhook deliveries was committed and acknowledged. `nak_delay` and
    `max_nak_delay` are the first and the largest pause between in-place retries of a message the
    database could not take.
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
        max_nak_delay: float = 30.0,
        ingest: Ingest | None = None,
        on_applied: Callable[[], object] | None = None,
    ) -> None:
        if batch < 1 or max_deliver < 2:
            raise ValueError("batch must be >= 1 and max_deliver >= 2")
        if nak_delay <= 0 or max_nak_delay < nak_delay or ack_wait <= 0:
            raise ValueError("need 0 < nak_delay <= max_nak_delay and ack_wait > 0")
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
        self._ingest: Ingest = ingest or (lambda s, env: apply_event(s, env, stream_region=self.region))
        self.on_applied = on_applied
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
        """Finish the message in hand (or give it back if the database still refuses it), stop fetching.

        The rest of the batch is handed back at once (nak, in order), so the next start resumes at
        the first unapplied message without waiting for ack_wait; the durable consumer remains.
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
            # One instance holds at most a batch; the margin covers a batch lost with a dead process.
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
            except TimeoutError:  # nats' own and asyncio's: nats-py raises both when the stream is idle
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
                    await _give_back(msgs[index:])
                    break
                # Returns once the message is acked or terminated; False when stopping (it was nak'ed).
                if not await self._handle(msg, msgs[index + 1:]):
                    await _give_back(msgs[index + 1:])
                    break

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _handle(self, msg: Msg, waiting: Sequence[Msg] = ()) -> bool:
        """Apply `msg`, retrying in place until it is acked or terminated; False if stopped first.

        `waiting` are the messages fetched behind it: they are kept alive while this one is retried.
        """
        try:
            envelope = CallEventEnvelope.from_bytes(msg.data)
        except (EnvelopeError, RecursionError):
            # EnvelopeError messages quote field values, so only the fact is logged, with the position.
            return await self._reject(msg, "malformed envelope")
        if envelope.region != self.region:
            return await self._reject(msg, f"event of region {envelope.region!r}")
        if msg.subject != envelope.subject:
            return await self._reject(msg, "subject does not match the event")
        tries = 0
        while True:
            tries += 1
            try:
                result = await self._attempt(envelope, msg, waiting)
            except asyncio.CancelledError:
                raise
            except EventRejected as exc:
                return await self._reject(msg, str(exc))  # names the reason, never the content
            except Exception as exc:
                if _is_poison(exc):
                    # Earlier deliveries (before a crash or a stop) count as tries too.
                    if tries + _deliveries(msg) - 1 >= _POISON_TRIES:
                        return await self._give_up(msg, exc)
                    if tries == 1:
                        # The text is not logged: it may quote the event's content.
                        log.warning("event consumer %s: %s on %s; trying again", self.durable,
                                    type(exc).__name__, _position(msg))
                elif tries == 1 or tries % _LOG_EVERY == 0:
                    log.warning("event consumer %s: database unavailable on %s (%s, try %d); retrying in"
                                " place", self.durable, _position(msg), type(exc).__name__, tries)
                self.stats.retried += 1
                if not await self._wait_retry(tries, msg, waiting):
                    await _settle(msg.nak())  # stopping: the next start takes it up again, first
                    return False
                continue
            outcome = result.outcome if isinstance(result, IngestResult) else result
            await _settle(msg.ack())
            if outcome is IngestOutcome.DUPLICATE:
                self.stats.duplicates += 1
                return True
            self.stats.applied += 1
            # A custom ingest's bare outcome does not say whether it enqueued anything: wake anyway.
            if not isinstance(result, IngestResult) or result.deliveries:
                self._notify()
            return True

    async def _attempt(
        self, envelope: CallEventEnvelope, msg: Msg, waiting: Sequence[Msg]
    ) -> IngestOutcome | IngestResult:
        """One ingest, keeping the messages alive if it is slow (a database that does not answer)."""
        task = asyncio.ensure_future(self._ingest(self.sessions, envelope))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.ack_wait / 3)
                if done:
                    return task.result()
                await _keep_alive(msg, waiting)
        finally:
            if not task.done():  # we are being cancelled
                task.cancel()

    async def _wait_retry(self, tries: int, msg: Msg, waiting: Sequence[Msg]) -> bool:
        """Back off before the next try, keeping the messages alive; False when stopping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.max_nak_delay, self.nak_delay * 2 ** min(tries - 1, 30))
        while not self._stopping.is_set():
            await _keep_alive(msg, waiting)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            await self._pause(min(remaining, self.ack_wait / 3))
        return False

    def _notify(self) -> None:
        if self.on_applied is None:
            return
        try:
            self.on_applied()
        except Exception as exc:
            self.stats.callback_errors += 1
            log.warning("event consumer %s: on_applied failed (%s)", self.durable, type(exc).__name__)

    async def _reject(self, msg: Msg, reason: str) -> bool:
        log.warning("event consumer %s: terminated message %s: %s", self.durable, _position(msg), reason)
        self.stats.rejected += 1
        await _settle(msg.term())
        return True

    async def _give_up(self, msg: Msg, exc: Exception) -> bool:
        log.error("event consumer %s: giving up on %s after %d deliveries (%s)", self.durable,
                  _position(msg), _deliveries(msg), type(exc).__name__)
        self.stats.given_up += 1
        await _settle(msg.term())
        return True


def _is_poison(exc: Exception) -> bool:
    """True if `exc` blames the event (retrying cannot help); False for a database outage."""
    if isinstance(exc, (IntegrityError, DataError)):
        return True
    if isinstance(exc, DBAPIError):
        state = sqlstate_of(exc)
        return state is not None and state[:2] in _DATA_SQLSTATES
    # The database or the network (a full pool, a dropped connection), not the event; anything else is
    # a bug that would repeat.
    return not isinstance(exc, (OSError, TimeoutError, SqlTimeoutError, DisconnectionError))


async def _give_back(msgs: Sequence[Msg]) -> None:
    # Nak'ed in order without delay: the next fetch (this or the next start) gets them back in order.
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.nak()


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


async def _keep_alive(msg: Msg, waiting: Sequence[Msg]) -> None:
    # An in-progress ack restarts a message's ack_wait, so the server does not hand it out again.
    for m in (msg, *waiting):
        with contextlib.suppress(Exception):
            await m.in_progress()


async def _settle(ack: Awaitable[None]) -> None:
    # Losing an ack to a connection drop only means a redelivery, which the event row absorbs.
    try:
        await ack
    except Exception as exc:
        log.info("could not settle a message (%s); it will be redelivered", type(exc).__name__)
