"""What agents' `record` tools kept (screen results, reservations, messages for staff): tenant data in
its home region, one row per idempotency key (call + tool + arguments; cells.contract.records)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from control.db.base import Base, Regional, regional_args, same_region_fk, utcnow_column


class ToolRecord(Regional, Base):
    __tablename__ = "tool_records"
    __table_args__ = regional_args(
        "tool_records",
        same_region_fk(["agent_id"], "agents"),
        # A retried or repeated write of the same call, tool and arguments lands on this and stores once.
        UniqueConstraint("region", "tenant_id", "idempotency_key"),
        Index("ix_tool_records_tenant_kind", "region", "tenant_id", "kind", "created_at"),
        Index("ix_tool_records_tenant_call", "region", "tenant_id", "call_sid"),
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    call_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # the platform's call, when it is known
    call_sid: Mapped[str] = mapped_column(String(64))  # the carrier's call the record came from
    tool: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = utcnow_column()
