"""The control plane's event pipeline: call events from NATS into the database, and webhooks out."""

from control.events.consumer import ConsumerStats, EventConsumer, durable_name
from control.events.ingest import (
    PUBLIC_EVENT_TYPES,
    EventRejected,
    IngestOutcome,
    ingest_event,
    twilio_status,
)
from control.events.usage import CURRENCY, PRICE_PER_MINUTE_MICROS, amount_micros, billable_seconds
from control.events.webhooks import DispatchStats, RetryPolicy, WebhookDispatcher, check_url

__all__ = [
    "CURRENCY", "PRICE_PER_MINUTE_MICROS", "PUBLIC_EVENT_TYPES", "ConsumerStats", "DispatchStats",
    "EventConsumer", "EventRejected", "IngestOutcome", "RetryPolicy", "WebhookDispatcher", "amount_micros",
    "billable_seconds", "check_url", "durable_name", "ingest_event", "twilio_status",
]
