"""The control plane's event pipeline: call events from NATS into the database, and webhooks out."""

from control.events.consumer import ConsumerStats, EventConsumer, durable_name
from control.events.ingest import (
    END_DISPOSITIONS,
    PUBLIC_EVENT_TYPES,
    REJECT_REASONS,
    EventRejected,
    IngestOutcome,
    IngestResult,
    apply_event,
    ingest_event,
    twilio_status,
)
from control.events.redact import redact_payload, redact_text
from control.events.usage import CURRENCY, PRICE_PER_MINUTE_MICROS, amount_micros, billable_seconds
from control.events.webhooks import DispatchStats, RetryPolicy, WebhookDispatcher

__all__ = [
    "CURRENCY", "END_DISPOSITIONS", "PRICE_PER_MINUTE_MICROS", "PUBLIC_EVENT_TYPES", "REJECT_REASONS",
    "ConsumerStats", "DispatchStats", "EventConsumer", "EventRejected", "IngestOutcome", "IngestResult",
    "RetryPolicy", "WebhookDispatcher", "amount_micros", "apply_event", "billable_seconds",
    "durable_name", "ingest_event", "redact_payload", "redact_text", "twilio_status",
]
