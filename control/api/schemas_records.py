"""Tool records as the API returns them (what agents' `record` tools kept; cells.contract.records)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from control.api.schemas import Output


class ToolRecordOut(Output):
    id: uuid.UUID
    agent_id: uuid.UUID
    call_id: uuid.UUID | None
    call_sid: str
    tool: str
    kind: str
    arguments: dict[str, Any]
    created_at: datetime


class ToolRecordList(Output):
    items: list[ToolRecordOut]
    next_offset: int | None
