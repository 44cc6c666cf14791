"""The event consumer, measured: how late each call event is applied, and how many wait."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.contract.envelope import CallEventEnvelope
from control.events.consumer import Ingest
from control.events.ingest import IngestOutcome, IngestResult, apply_event
from control.observability.metrics import ControlMetrics
from regions.catalogue import get_region


def measured_ingest(metrics: ControlMetrics) -> Ingest:
    """`apply_event` (as the consumer runs it by default), observing each applied event's lag: from
    when it happened (the envelope's time) to its commit. Duplicates (redeliveries) are not lag."""

    region = get_region(metrics.region).code

    async def ingest(sessions: async_sessionmaker[AsyncSession],
                     envelope: CallEventEnvelope) -> IngestOutcome | IngestResult:
        result = await apply_event(sessions, envelope, stream_region=region)
        outcome = result.outcome if isinstance(result, IngestResult) else result
        if outcome is IngestOutcome.APPLIED:
            metrics.event_applied(envelope)
        return result

    return ingest


async def consumer_pending(metrics: ControlMetrics, runtime: Any) -> None:
    """The consumer's backlog from JetStream (a CellRuntime: its `js` and `consumer`); -1 if unknown."""
    gauge = metrics.pending.labels(metrics.region)
    gauge.set(-1)
    consumer = runtime.consumer
    if runtime.js is None or consumer is None:
        return
    info = await runtime.js.consumer_info(consumer.stream, consumer.durable)
    gauge.set(float(info.num_pending or 0) + float(info.num_ack_pending or 0))
