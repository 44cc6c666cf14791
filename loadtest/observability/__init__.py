"""What the worker's telemetry costs the event loop (`python -m loadtest.observability`)."""
