"""Bodies of the webhook endpoint and delivery log routes."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from control.api.schemas import Input, Output

EVENT_TYPES: Final = ("call.created", "call.started", "call.ended", "call.transcript", "recording.ready")
EventType = Literal["call.created", "call.started", "call.ended", "call.transcript", "recording.ready"]


def _url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port outside 0-65535
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must be http or https")
    if not parts.hostname or port == 0:
        raise ValueError("the URL needs a host")
    if parts.fragment:
        raise ValueError("the URL may not have a #fragment (it is never sent)")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("the URL may not contain spaces or control characters")
    return value


WebhookUrl = Annotated[str, StringConstraints(min_length=8, max_length=2048), AfterValidator(_url)]


def _unique(values: list[str]) -> list[str]:
    # A set in effect; kept sorted so that the stored value and idempotency fingerprints are stable.
    return sorted(set(values))


EventTypes = Annotated[list[EventType], Field(max_length=len(EVENT_TYPES)), AfterValidator(_unique)]


class WebhookEndpointCreate(Input):
    url: WebhookUrl
    event_types: EventTypes = Field(default_factory=list, description="Empty: every event type.")
    enabled: bool = True


class WebhookEndpointUpdate(Input):
    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    enabled: bool | None = None


class WebhookEndpointOut(Output):
    id: uuid.UUID
    url: str
    event_types: list[str]
    enabled: bool
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    signing_secret: Annotated[str, StringConstraints(pattern=r"^whsec_")] = Field(
        description="Standard Webhooks signing secret, shown only in this response.")


class WebhookEndpointList(Output):
    items: list[WebhookEndpointOut]
    next_offset: int | None


# What the delivery log says about a failed attempt. The dispatcher's raw error text stays internal:
# "connection refused" versus "timed out" would map the cell's network for whoever picks the URL.
DeliveryError = Literal["http_error", "timeout", "tls_error", "connection_failed", "address_not_allowed",
                        "invalid_endpoint", "endpoint_disabled", "delivery_failed"]
_TLS_MARKERS: Final = ("ssl", "tls", "certificate")
_POLICY_MARKERS: Final = ("public", "private", "not allowed", "loopback", "link-local", "reserved",
                          "unicast")
_ENDPOINT_MARKERS: Final = ("url", "secret", "non-http")


def error_category(raw: str | None) -> str | None:
    """The coarse category of a stored last_error (the dispatcher's text), for the tenant to see."""
    if raw is None:
        return None
    text = raw.lower()
    head = text.split(":", 1)[0]
    if re.fullmatch(r"http \d{3}", text.strip()):
        return "http_error"
    if "disabled" in text:
        return "endpoint_disabled"
    if any(m in text for m in _TLS_MARKERS):
        return "tls_error"
    if "timeout" in head or "timed out" in text:
        return "timeout"
    if any(m in text for m in _POLICY_MARKERS):
        return "address_not_allowed"
    if head.endswith("error") or "connect" in text or "resolve" in text or "refused" in text:
        # httpx.ConnectError, ReadError, RemoteProtocolError, a DNS failure, ...
        return "connection_failed"
    if any(m in text for m in _ENDPOINT_MARKERS):
        return "invalid_endpoint"
    return "delivery_failed"


class WebhookDeliveryOut(Output):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: str
    event_type: str
    status: str
    attempts: int
    response_status: int | None
    last_error: DeliveryError | None = Field(
        description="Why the last attempt failed, as a category; response_status has the receiver's code.")
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None

    @field_validator("last_error", mode="before")
    @classmethod
    def _categorise(cls, value: object) -> object:
        # Categories pass through unchanged, so a validated model can be validated again.
        if value is None or value in DeliveryError.__args__:  # type: ignore[attr-defined]
            return value
        return error_category(str(value))


class WebhookDeliveryList(Output):
    items: list[WebhookDeliveryOut]
    next_offset: int | None
