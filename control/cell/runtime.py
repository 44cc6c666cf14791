"""The cell's connection to its region's NATS: publishing control events, asking workers for slots,
reading live call state, and running the event consumer and the webhook dispatcher."""

from __future__ import annotations

import logging
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cells.contract.call_state import CallStateStore
from cells.contract.envelope import CallEventEnvelope
from cells.contract.jetstream import ensure_call_state_bucket, ensure_call_stream, publish_event
from cells.contract.slots import request_slot
from cells.contract.stream_probe import stream_live
from control.api.settings import ControlSettings
from control.events import EventConsumer, WebhookDispatcher
from control.events.consumer import Ingest
from control.retention.scheduler import RetentionScheduler, live_stores

log = logging.getLogger(__name__)


class CellRuntime:
    def __init__(self, settings: ControlSettings, *, slot_timeout: float = 1.0,
                 slot_attempts: int = 3, ingest: Ingest | None = None) -> None:
        # 3 x 1 s (+ short waits) fits the webhook's 5 s budget for a slot, which also pays for the
        # agent lookup and the call_created publish; Twilio waits 15 s for the whole answer.
        self.settings = settings
        self.region = settings.region
        self.slot_timeout = slot_timeout
        self.slot_attempts = slot_attempts
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.call_state: CallStateStore | None = None
        self.consumer: EventConsumer | None = None
        self.dispatcher: WebhookDispatcher | None = None
        self.ingest = ingest  # None: the consumer's default (control.events.ingest.apply_event)
        self.retention: RetentionScheduler | None = None

    async def start(self, sessions: async_sessionmaker[AsyncSession] | None) -> None:
        assert self.settings.nats_url is not None
        # Reconnect for ever: a NATS restart must not take the cell's API down with it.
        self.nc = await nats.connect(self.settings.nats_url, name=f"control-{self.region}",
                                     max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        self.js = self.nc.jetstream()
        # Retention: the stream's and the bucket's defaults (cells.contract.jetstream), which the
        # workers declare too.
        await ensure_call_stream(self.js, self.region)
        kv = await ensure_call_state_bucket(self.js, self.region)
        self.call_state = CallStateStore(kv, self.region)
        if self.settings.run_background and sessions is not None:
            self.dispatcher = WebhookDispatcher(sessions, self.region,
                                                allow_private=self.settings.allow_private_webhooks)
            await self.dispatcher.start()
            # A delivery goes out as soon as its event is stored, not at the next poll.
            self.consumer = EventConsumer(self.js, sessions, self.region, on_applied=self.dispatcher.wake,
                                          ingest=self.ingest)
            await self.consumer.start()
            # Tenants' retention (control.retention): hourly hard deletes in every store of the region.
            self.retention = RetentionScheduler(sessions, self.region, live_stores(
                self.region, self.js, self.settings.object_store_root, self.settings.secrets_key))
            self.retention.start()

    async def stop(self) -> None:
        for part in (self.retention, self.consumer, self.dispatcher):
            if part is not None:
                try:
                    await part.stop()
                except Exception:
                    log.exception("stopping %s failed", type(part).__name__)
        if self.nc is not None:
            await self.nc.drain()
        self.nc = self.js = None

    async def publish(self, event: CallEventEnvelope) -> None:
        if self.js is None:
            raise RuntimeError("the cell is not connected to NATS")
        await publish_event(self.js, event.subject, event.to_bytes(), msg_id=event.event_id)

    async def request_slot(self, req: dict[str, Any]) -> dict[str, Any] | None:
        if self.nc is None:
            return None
        return await request_slot(self.nc, self.region, req, timeout=self.slot_timeout,
                                  attempts=self.slot_attempts)

    async def should_resume(self, call_id: str) -> bool:
        """The call is live and its stream is really gone (not a replayed `<Connect action>` callback
        while the first worker still has the stream)."""
        if self.call_state is None or self.nc is None:
            return False
        nc = self.nc

        async def live(worker_id: str, call: str) -> bool | None:
            return await stream_live(nc, self.region, worker_id, call, timeout=self.slot_timeout)

        return await self.call_state.resumable(call_id, live)

    async def claim_call(self, call_id: str, **fields: Any) -> bool:
        """The first webhook of a call claims it; a replayed one gets False (no slot, no events). NATS
        away: the call goes ahead (a missed replay check beats refusing every call)."""
        if self.call_state is None:
            return True
        try:
            return await self.call_state.claim(call_id, **fields)
        except Exception as exc:
            log.warning("could not claim call %s in the call state (%s); going ahead", call_id, exc)
            return True

    def health(self) -> dict[str, Any]:
        connected = bool(self.nc is not None and self.nc.is_connected)
        return {
            "ok": connected,
            "nats": connected,
            "consumer": self.consumer.health() if self.consumer is not None else None,
            "webhooks": self.dispatcher.health() if self.dispatcher is not None else None,
        }
