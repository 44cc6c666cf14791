"""A worker's Prometheus metrics and per-call traces, built by observing each call's events.

`WorkerTelemetry` (one per worker app) owns a private metrics registry and a tracer; `call(...)` gives
the `CallObserver` that a worker attaches next to its record sink or event publisher. The HTTP side
(`GET /metrics`, `GET /traces/recent`) is in `cells.observability.http`.
"""

from cells.observability.calls import CallObserver, WorkerTelemetry

__all__ = ["CallObserver", "WorkerTelemetry"]
