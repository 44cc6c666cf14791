"""The wire contract between workers, the control plane's webhook and its event consumer.

Every call event is one JetStream message on `<region>.calls.<tenant>.<call>.<kind>` whose body is a
`CallEventEnvelope` as JSON and whose `Nats-Msg-Id` is the envelope's `event_id`, so a publisher may
retry after a lost ack and the stream drops the copy; the consumer's unique (region, event_id) row
drops any copy that gets past the stream's duplicate window.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from cells.contract.jetstream import call_subject
from cells.contract.redaction import KEEP_KEYS, redact_payload
from regions.catalogue import get_region

# uuid5 namespace for carrier call ids: the same CallSid always maps to the same call id, so a
# webhook Twilio retries (or a resumed stream) never creates a second call.
CALL_NAMESPACE: Final = uuid.UUID("6f0b7f1e-7a43-4c1e-9f5e-2a4c0c1d5a11")
SLOT_QUEUE: Final = "workers"
MAX_EVENT_BYTES: Final = 256 * 1024
_KIND = re.compile(r"[a-z][a-z0-9_]{0,49}")
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


class EnvelopeError(ValueError):
    """A message that is not a well-formed call event (it is logged and terminated, never retried)."""


def call_id_for_sid(call_sid: str) -> uuid.UUID:
    if not call_sid:
        raise ValueError("a carrier call id is required")
    return uuid.uuid5(CALL_NAMESPACE, f"twilio:{call_sid}")


def slot_subject(region: str) -> str:
    """Workers of `region` listen here in queue group `workers`; one of them answers each request."""
    return f"{get_region(region).code}.workers.slot"


@dataclass(frozen=True)
class CallEventEnvelope:
    event_id: str  # also the Nats-Msg-Id; unique per event, stable across a publisher's retries
    call_id: str  # UUID text
    tenant_id: str  # UUID text
    region: str  # the tenant's home region; the stream and the database partition follow it
    kind: str  # call_created, call_started, transcript, agent_said, turn, tool_call, ..., call_ended
    occurred_at: float  # unix seconds
    data: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "control" or the worker id

    def __post_init__(self) -> None:
        for name in ("call_id", "tenant_id"):
            try:
                uuid.UUID(getattr(self, name))
            except (ValueError, TypeError, AttributeError):
                raise EnvelopeError(f"{name} must be a UUID, got {getattr(self, name)!r}") from None
        try:
            get_region(self.region)
        except ValueError as exc:
            raise EnvelopeError(str(exc)) from None
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise EnvelopeError(f"bad event kind {self.kind!r}")
        if not isinstance(self.event_id, str) or not _EVENT_ID.fullmatch(self.event_id):
            raise EnvelopeError(f"bad event id {self.event_id!r}")
        if not isinstance(self.occurred_at, (int, float)) or isinstance(self.occurred_at, bool):
            raise EnvelopeError("occurred_at must be a number of seconds")
        if not isinstance(self.data, dict):
            raise EnvelopeError("data must be an object")

    @classmethod
    def new(cls, *, call_id: str, tenant_id: str, region: str, kind: str, event_id: str,
            data: dict[str, Any] | None = None, source: str = "",
            occurred_at: float | None = None) -> CallEventEnvelope:
        # A card number never goes on the wire, whoever builds the event (the publisher masks more).
        return cls(event_id=event_id, call_id=str(call_id), tenant_id=str(tenant_id), region=region,
                   kind=kind, occurred_at=time.time() if occurred_at is None else occurred_at,
                   data=redact_payload(data or {}, pii=False, keep=KEEP_KEYS), source=source)

    @property
    def subject(self) -> str:
        return call_subject(self.region, self.tenant_id, self.call_id, self.kind)

    def to_bytes(self) -> bytes:
        body = json.dumps(asdict(self), separators=(",", ":"), default=str).encode()
        if len(body) > MAX_EVENT_BYTES:
            raise EnvelopeError(f"event {self.event_id} is {len(body)} bytes; the limit is {MAX_EVENT_BYTES}")
        return body

    @classmethod
    def from_bytes(cls, body: bytes) -> CallEventEnvelope:
        if len(body) > MAX_EVENT_BYTES:
            raise EnvelopeError("event too large")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"event is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise EnvelopeError("event must be a JSON object")
        known = {"event_id", "call_id", "tenant_id", "region", "kind", "occurred_at", "data", "source"}
        missing = {"event_id", "call_id", "tenant_id", "region", "kind", "occurred_at"} - doc.keys()
        if missing:
            raise EnvelopeError(f"event lacks {sorted(missing)}")
        return cls(**{k: v for k, v in doc.items() if k in known})
