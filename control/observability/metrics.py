"""The control plane's metrics, in a registry of its own per app.

Labels are bounded and carry no tenant data: route templates (never raw paths, which hold ids),
methods, status codes, outcomes, and the event source as "control" or "worker" (not the worker id).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cells.contract.envelope import CallEventEnvelope

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# From a worker's emit to the control plane's commit: milliseconds normally, minutes after an outage.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0)


class ControlMetrics:
    def __init__(self, region: str) -> None:
        self.region = region
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Histogram("autospeak_api_request_seconds",
                                  "Control plane HTTP requests by route template, method and status",
                                  ["region", "route", "method", "status"], buckets=LATENCY_BUCKETS,
                                  registry=r)
        self.slots = Histogram("autospeak_voice_slot_request_seconds",
                               "Voice webhook: asking the region's workers for a slot, by outcome "
                               "(accepted, no_worker, error)", ["region", "outcome"],
                               buckets=LATENCY_BUCKETS, registry=r)
        self.event_lag = Histogram("autospeak_event_lag_seconds",
                                   "Call events: from when they happened to when the consumer applied them",
                                   ["region", "source"], buckets=LAG_BUCKETS, registry=r)
        self.db_up = Gauge("autospeak_database_up", "1 when the database answered the scrape's check",
                           ["region"], registry=r)
        self.db_check = Gauge("autospeak_database_check_seconds", "How long the scrape's database check took",
                              ["region"], registry=r)
        self.pending = Gauge("autospeak_event_consumer_pending",
                             "Call events in the region's stream not yet applied (waiting or in flight; "
                             "-1: unknown)",
                             ["region"], registry=r)
        self._runtime = _RuntimeCollector(region)
        r.register(self._runtime)
        self.probes: list[Callable[[], Awaitable[None]]] = []  # run (with a deadline) at each scrape

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"  # a client picks the method: keep it bounded
        self.requests.labels(self.region, route, method, str(status)).observe(seconds)

    def slot_done(self, outcome: str, seconds: float) -> None:
        self.slots.labels(self.region, outcome).observe(seconds)

    def event_applied(self, event: CallEventEnvelope, now: float | None = None) -> None:
        lag = max(0.0, (now if now is not None else time.time()) - float(event.occurred_at))
        self.event_lag.labels(self.region, "control" if event.source == "control" else "worker").observe(lag)

    def database_checked(self, up: bool, seconds: float) -> None:
        self.db_up.labels(self.region).set(1.0 if up else 0.0)
        self.db_check.labels(self.region).set(seconds)

    def watch_runtime(self, health: Callable[[], dict[str, Any]]) -> None:
        """A cell's runtime health (CellRuntime.health: NATS, consumer and dispatcher counts), read at
        every scrape."""
        self._runtime.health = health


class _RuntimeCollector(Collector):
    """Reads the consumer's and the dispatcher's own counters at scrape time (they keep them anyway)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.health: Callable[[], dict[str, Any]] | None = None

    def describe(self) -> list[Any]:
        return []  # families vary with what the cell runs

    def collect(self) -> Iterator[Any]:
        if self.health is None:
            return
        h = self.health()
        yield _up("autospeak_nats_up", "1 while the cell's NATS connection is up", self.region,
                  bool(h.get("nats")))
        consumer = h.get("consumer")
        if consumer:
            events = CounterMetricFamily("autospeak_events_consumed", "Call events taken off the stream, by "
                                         "outcome", labels=["region", "outcome"])
            for outcome in ("applied", "duplicates", "rejected", "retried", "given_up", "fetch_errors"):
                events.add_metric([self.region, outcome], float(consumer.get(outcome, 0)))
            yield events
            yield _up("autospeak_event_consumer_running", "1 while the event consumer runs", self.region,
                      bool(consumer.get("running")))
        hooks = h.get("webhooks")
        if hooks:
            deliveries = CounterMetricFamily("autospeak_webhook_deliveries", "Tenant webhook delivery "
                                             "attempts, by outcome", labels=["region", "outcome"])
            for outcome in ("delivered", "retrying", "failed"):
                deliveries.add_metric([self.region, outcome], float(hooks.get(outcome, 0)))
            yield deliveries
            polls = CounterMetricFamily("autospeak_webhook_poll_errors", "Dispatcher polls that failed",
                                        labels=["region"])
            polls.add_metric([self.region], float(hooks.get("poll_errors", 0)))
            yield polls
            yield _up("autospeak_webhook_dispatcher_running", "1 while the dispatcher runs", self.region,
                      bool(hooks.get("running")))


def _up(name: str, doc: str, region: str, up: bool) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["region"])
    g.add_metric([region], 1.0 if up else 0.0)
    return g
