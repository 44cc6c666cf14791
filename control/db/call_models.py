"""Call data: calls, turns, the persisted event stream, recordings and the usage ledger."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from control.db.base import Base, Regional, regional_args, same_region_fk, utcnow_column


class Call(Regional, Base):
    __tablename__ = "calls"
    __table_args__ = regional_args(
        "calls",
        same_region_fk(["agent_id"], "agents"),
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
        Index("ix_calls_tenant_started", "tenant_id", "started_at"),
        Index("ix_calls_carrier_sid", "region", "carrier_call_sid"),
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The published agent version the call runs (None: the unpublished record).
    agent_version: Mapped[int | None] = mapped_column(Integer)
    direction: Mapped[str] = mapped_column(String(8))
    from_e164: Mapped[str] = mapped_column(String(16))
    to_e164: Mapped[str] = mapped_column(String(16))
    carrier: Mapped[str] = mapped_column(String(32), default="twilio")
    carrier_call_sid: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="ringing")
    disposition: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = utcnow_column()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Per-stage timestamps (endpointing, STT final, LLM first token, TTS first audio) for the dashboard.
    latency: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Turn(Regional, Base):
    __tablename__ = "turns"
    __table_args__ = regional_args(
        "turns",
        same_region_fk(["call_id"], "calls", ondelete="CASCADE"),
        UniqueConstraint("region", "call_id", "seq"),
        CheckConstraint("speaker IN ('caller', 'agent')", name="speaker"),
    )
    call_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    seq: Mapped[int] = mapped_column(Integer)
    speaker: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)  # stored redacted
    start_ms: Mapped[int] = mapped_column(Integer)
    end_ms: Mapped[int] = mapped_column(Integer)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)


class CallEvent(Regional, Base):
    __tablename__ = "call_events"
    __table_args__ = regional_args(
        "call_events",
        same_region_fk(["call_id"], "calls", ondelete="CASCADE"),
        # The JetStream message id: a redelivered event hits this constraint and is skipped.
        UniqueConstraint("region", "event_id"),
        Index("ix_call_events_call", "region", "call_id", "occurred_at"),
    )
    call_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = utcnow_column()


class Recording(Regional, Base):
    __tablename__ = "recordings"
    __table_args__ = regional_args("recordings", same_region_fk(["call_id"], "calls", ondelete="CASCADE"))
    call_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # Key inside the region's object store (directory or bucket); never a cross-region URL.
    object_key: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(100), default="audio/wav")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    paused_segments: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = utcnow_column()


class UsageRecord(Regional, Base):
    __tablename__ = "usage_ledger"
    __table_args__ = regional_args(
        "usage_ledger",
        same_region_fk(["call_id"], "calls"),
        # Exactly one ledger record per call: the call id is globally unique and pins the region.
        UniqueConstraint("region", "call_id"),
    )
    call_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    billable_seconds: Mapped[int] = mapped_column(Integer)
    stt_seconds: Mapped[int] = mapped_column(Integer, default=0)
    tts_characters: Mapped[int] = mapped_column(Integer, default=0)
    llm_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    llm_output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    amount_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    created_at: Mapped[datetime] = utcnow_column()
