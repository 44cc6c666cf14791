"""The one stream lifecycle of a worker, embedded or in a cell: a session on the call's transport,
carrier-neutral events from the transport into it until the carrier stops the stream, the call ends or
the socket dies, then the call's sink settles it (cells.worker.sink)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

from cells.call.handoff import prepare_after_transfer
from cells.call.session import CallSession
from cells.call.transport import (
    AudioIn,
    CarrierEvent,
    DtmfIn,
    MarkPlayed,
    StreamStop,
    Transport,
    TransportProxy,
)
from cells.providers.base import Message, ToolCall
from cells.worker.sink import CallSink

log = logging.getLogger(__name__)


class Agent(Protocol):
    def new_session(self, transport: Transport, **kwargs: Any) -> CallSession: ...


class StreamStart(Protocol):
    """What a transport's handshake knows of the stream (twilio_media.Start, pcm_ws.PcmStart)."""

    @property
    def stream_sid(self) -> str: ...
    @property
    def call_sid(self) -> str: ...


async def pump(session: CallSession, events: AsyncIterable[CarrierEvent]) -> bool:
    """Feeds the events to the session. True when the carrier stopped the stream (the caller hung
    up); False when the call ended on our side or the events ran out (a dropped stream)."""
    async for event in events:
        if isinstance(event, StreamStop):
            return True
        if isinstance(event, AudioIn):
            session.on_media(event.data)
        elif isinstance(event, MarkPlayed):
            session.on_mark(event.name)
        elif isinstance(event, DtmfIn):
            session.on_dtmf(event.digit)
        if session.state.ended:
            return False
    return False


async def no_events() -> AsyncIterator[CarrierEvent]:
    """The read loop of a stream handed over before it began."""
    return
    yield


class SettlingTransport(TransportProxy):
    """Runs `before_close` (e.g. marking the call ended) before the worker closes the stream on
    purpose: the carrier asks what to do next as soon as its stream ends."""

    def __init__(self, inner: Transport, before_close: Callable[[str], Awaitable[Any]]) -> None:
        super().__init__(inner)
        self.before_close = before_close

    async def close(self, reason: str) -> None:
        await self.before_close(reason)
        await self.inner.close(reason)


class Handover:
    """One active stream's hand-over switch: a stopping worker interrupts the stream's read loop (by
    cancelling the task that runs it, only while it waits for the carrier's next message) and the
    stream then ends as a dropped one."""

    def __init__(self) -> None:
        self.requested = False
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def hand_over(self) -> None:
        self.requested = True
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._task = asyncio.current_task()
        try:
            yield
        finally:
            self._task = None

    def consume_cancel(self) -> bool:
        """True when the CancelledError being handled is our own hand-over (then it is swallowed)."""
        if not self._cancelled:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True


OnControl = Callable[[str, ToolCall], Awaitable[None]]


async def run_call(agent: Agent, transport: Transport, start: StreamStart, sink: CallSink, *,
                   on_control: OnControl | None = None, history: Sequence[Message] | None = None,
                   elapsed_s: float = 0.0, handover: Handover | None = None,
                   on_started: Callable[[CallSession], Any] | None = None,
                   on_over: Callable[[], Any] | None = None) -> None:
    """Runs one stream's call to its end, whatever ends it; the sink settles it in a task of its own
    (the server cancels this handler when the socket goes, and the call must still be wound down).
    `on_started` runs once the session has started, `on_over` as soon as the stream is over."""
    handover = handover or Handover()
    transport = SettlingTransport(transport, sink.before_close)
    session = agent.new_session(transport, on_event=sink.event, on_control=on_control)
    prepare_after_transfer(session, getattr(start, "custom_parameters", None) or {})  # no one answered
    sink.session = session
    session.hooks = sink.hooks  # the recording consent question, where the caller's number needs it
    caller_hung_up = False
    try:
        await session.start(start.stream_sid, start.call_sid, history=history, elapsed_s=elapsed_s)
        if on_started is not None:
            on_started(session)
        with handover.interruptible():
            caller_hung_up = await pump(session, no_events() if handover.requested else transport.events())
    except asyncio.CancelledError:
        if not handover.consume_cancel():
            raise  # the server's: the socket is gone (a dropped stream)
    except Exception:  # the socket died under us: end this stream, keep the worker
        log.info("call %s: stream %s ended abruptly", session.call_sid, start.stream_sid, exc_info=True)
    finally:
        log.info("call %s: stream %s over, settling the call", session.call_sid, start.stream_sid)
        if on_over is not None:
            on_over()
        # The worker is stopping: this stream ends as a dropped one, and its socket is closed only once
        # the call's state is saved and its lease released, so that another worker resumes it.
        handing_over = handover.requested and not caller_hung_up
        sink.finishing = True
        finish = sink.track(sink.finish(session, caller_hung_up, transport.inner if handing_over else None))
        await asyncio.shield(finish)
