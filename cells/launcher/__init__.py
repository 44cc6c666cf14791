"""The cell launcher: starts the embedded services a cell needs (NATS now; the API and workers later)."""

from cells.launcher.jetstream import (
    call_state_bucket_name,
    call_stream_name,
    call_subject,
    ensure_call_state_bucket,
    ensure_call_stream,
    placement,
    publish_event,
)
from cells.launcher.nats import NatsStartError, NatsSupercluster, nats_server_binary

__all__ = [
    "NatsStartError",
    "NatsSupercluster",
    "call_state_bucket_name",
    "call_stream_name",
    "call_subject",
    "ensure_call_state_bucket",
    "ensure_call_stream",
    "nats_server_binary",
    "placement",
    "publish_event",
]
