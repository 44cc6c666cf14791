"""The one stream loop of a worker, embedded or in a cell: carrier-neutral events from the call's
transport into its session, until the carrier stops the stream, the call ends or the socket dies."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

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
