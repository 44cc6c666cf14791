"""The cell's periodic retention run: every tenant of the region, every `interval` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.retention.job import apply_region
from control.retention.purge import LiveStores
from regions.objectstore import RegionStore

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 3600.0


def live_stores(region: str, js: JetStreamContext | None, object_store: Path | None,
                region_key: bytes | None) -> LiveStores:
    return LiveStores(js, RegionStore(object_store, region) if object_store is not None else None, region_key)


class RetentionScheduler:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], region: str, stores: LiveStores,
                 *, interval: float = DEFAULT_INTERVAL_S, first_delay: float = 60.0) -> None:
        self.sessions, self.region, self.stores = sessions, region, stores
        self.interval, self.first_delay = interval, first_delay
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"retention-{self.region}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> int:
        certificates = await apply_region(self.sessions, self.region, self.stores)
        self.runs += 1
        if certificates:
            log.info("retention in %s: %d certificate(s) issued", self.region, len(certificates))
        return len(certificates)

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("retention run in %s failed; retrying next interval", self.region)
            await asyncio.sleep(self.interval)
