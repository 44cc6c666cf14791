"""Bodies of the call, outbound call, consent and usage routes."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, StringConstraints, field_validator, model_validator

from control.api.schemas import Input, Output
from control.api.schemas_directory import E164

# --- calls (read side) ------------------------------------------------------------------------

Direction = Literal["inbound", "outbound"]


class CallOut(Output):
    id: uuid.UUID
    agent_id: uuid.UUID | None
    agent_version: int | None = Field(default=None, description="The published agent version the call ran "
                                      "(null: the agent's unpublished record)")
    direction: str
    from_e164: str
    to_e164: str
    carrier: str
    carrier_call_sid: str | None
    status: str
    disposition: str | None
    summary: str | None
    started_at: datetime
    ended_at: datetime | None
    latency: dict[str, Any] = Field(description="Per-stage timings written by the event pipeline.")


class CallList(Output):
    items: list[CallOut]
    next_offset: int | None


class TurnOut(Output):
    seq: int
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    interrupted: bool


class Transcript(Output):
    call_id: uuid.UUID
    turns: list[TurnOut]


class CallEventOut(Output):
    event_id: str
    kind: str
    payload: dict[str, Any]
    occurred_at: datetime


class CallEventList(Output):
    items: list[CallEventOut]
    next_offset: int | None


# --- outbound calls ---------------------------------------------------------------------------


class OutboundCallCreate(Input):
    agent_id: uuid.UUID
    to: E164
    from_: E164 = Field(alias="from", description="One of the tenant's phone numbers.")

    @model_validator(mode="before")
    @classmethod
    def _no_python_name(cls, data: Any) -> Any:
        # pydantic treats the attribute name as a known key and silently drops it next to "from".
        if isinstance(data, dict) and "from_" in data:
            raise ValueError("unknown field 'from_' (the caller id field is 'from')")
        return data


class OutboundCallAccepted(Output):
    id: uuid.UUID
    status: Literal["queued"]
    carrier_call_sid: str


# --- consents ---------------------------------------------------------------------------------

# Stripped, and not empty once stripped (like the names in control.api.schemas).
ConsentSource = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ConsentKind = Literal["outbound_call", "recording", "voice_clone", "sms", "marketing"]
_MAX_CONSENT_SPAN = timedelta(days=100 * 366)


class ConsentCreate(Input):
    subject_e164: E164
    kind: ConsentKind
    granted: bool = Field(description="false records an explicit refusal, which overrides older grants.")
    source: ConsentSource = Field(description="Where it was given: ivr, web form, ...")
    expires_at: AwareDatetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        # Bounded so that the value always converts to UTC and fits the database's timestamp range.
        if value is not None:
            now = datetime.now(UTC)
            if not now < value < now + _MAX_CONSENT_SPAN:
                raise ValueError("must be in the future, and within 100 years")
        return value


class ConsentOut(Output):
    id: uuid.UUID
    subject_e164: str
    kind: str
    granted: bool
    source: str
    recorded_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ConsentList(Output):
    items: list[ConsentOut]
    next_offset: int | None


# --- usage ------------------------------------------------------------------------------------


class UsageTotals(Output):
    currency: str
    calls: int
    billable_seconds: int
    amount_micros: int


class UsageDay(UsageTotals):
    date: date


class UsageReport(Output):
    from_date: date = Field(description="First day included (UTC).")
    to_date: date = Field(description="Last day included (UTC).")
    totals: list[UsageTotals] = Field(
        description="One entry per currency billed in the period (usually one).")
    days: list[UsageDay]
