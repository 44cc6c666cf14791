"""The control plane's background runner for knowledge jobs: one task, one job at a time per cell.

Uploads are submitted as they are accepted; at start the runner re-embeds chunks of an older model and
resumes the jobs a stop or crash left queued or processing. A job's failure is recorded on its row
(service.ingest), so the runner itself never dies of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from control.db.tenancy import TenantScope
from control.knowledge.service import KnowledgeService

log = logging.getLogger(__name__)


class KnowledgeJobs:
    def __init__(self, service: KnowledgeService) -> None:
        self.service = service
        self._queue: asyncio.Queue[tuple[TenantScope, uuid.UUID]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    def submit(self, scope: TenantScope, doc_id: uuid.UUID) -> None:
        self.idle.clear()
        self._queue.put_nowait((scope, doc_id))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="knowledge-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _recover(self) -> None:
        try:
            count = await self.service.reembed_stale()
            if count:
                log.info("knowledge: re-embedded %d chunks with %s", count, self.service.embedder.model_id)
        except Exception:
            log.exception("knowledge jobs: could not re-embed stale chunks")
        try:
            for scope, doc_id in await self.service.pending_jobs():
                self.submit(scope, doc_id)
        except Exception:
            log.exception("knowledge jobs: could not list unfinished jobs")

    async def _run(self) -> None:
        await self._recover()
        while True:
            if self._queue.empty():
                self.idle.set()
            scope, doc_id = await self._queue.get()
            try:
                await self.service.ingest(scope, doc_id)
            except Exception:  # the database is away: the row stays for the next start to resume
                log.exception("knowledge job %s could not be recorded", doc_id)
            finally:
                self._queue.task_done()
