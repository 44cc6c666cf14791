"""The control plane's side of `cells.contract.records`: stores the region's workers' tool records.

A write names its tenant; it is stored in that tenant's scope in this cell's region (a tenant homed
elsewhere has no agent here, so its write is refused). The answer says stored (with the record) or why
not; a database failure answers `store_failed`, which the worker's tool reports as not done.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from cells.contract.records import RECORDS_QUEUE, RecordRefused, RecordWrite, records_write_subject
from control.records.service import RecordService

log = logging.getLogger(__name__)


class RecordResponder:
    def __init__(self, nc: Client, service: RecordService) -> None:
        self.nc, self.service = nc, service
        self.sub: Subscription | None = None

    async def start(self) -> None:
        subject = records_write_subject(self.service.region)
        self.sub = await self.nc.subscribe(subject, queue=RECORDS_QUEUE, cb=self._handle)

    async def stop(self) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()
            self.sub = None

    async def answer(self, data: bytes) -> dict[str, Any]:
        try:
            write = RecordWrite.from_json(json.loads(data))
            record, created = await self.service.put(write)
        except RecordRefused as exc:
            return {"ok": False, "error": exc.code, "message": exc.message}
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "invalid_record", "message": "malformed record write"}
        except Exception as exc:
            log.exception("storing a tool record failed")
            return {"ok": False, "error": "store_failed", "message": type(exc).__name__}
        return {"ok": True, "record": record, "created": created}

    async def _handle(self, msg: Msg) -> None:
        answer = await self.answer(msg.data)
        if msg.reply:
            await msg.respond(json.dumps(answer).encode())
