"""The worker's Prometheus metrics, in a registry of its own (several apps can share a process).

Labels stay bounded: region, stage, provider kind, disposition. No call, tenant or agent ids and
nothing a caller said or keyed in: those belong to traces, which carry ids but no content.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Per-stage latencies run from a few milliseconds (a frame) to seconds (a slow model or a long caller
# utterance for vad_end).
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# Frame lateness against the 20 ms schedule: below a frame is inaudible, several frames is a gap.
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)


class WorkerMetrics:
    def __init__(self, region: str, *, capacity: int, active: Callable[[], int],
                 nats_connected: Callable[[], bool] | None = None) -> None:
        self.region = region
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active = Gauge("autospeak_worker_active_calls", "Calls this worker is serving now",
                            ["region"], registry=r)
        self.active.labels(region).set_function(lambda: float(active()))
        self.capacity = Gauge("autospeak_worker_capacity_calls", "Calls this worker takes at most",
                              ["region"], registry=r)
        self.capacity.labels(region).set(capacity)
        self.load = Gauge("autospeak_worker_load_ratio", "Active calls over capacity (0..1)",
                          ["region"], registry=r)
        self.load.labels(region).set_function(lambda: active() / capacity if capacity else 1.0)
        self.nats_up = Gauge("autospeak_worker_nats_up", "1 while the worker's NATS connection is up "
                             "(absent on the embedded worker, which has none)", ["region"], registry=r)
        if nats_connected is not None:
            self.nats_up.labels(region).set_function(lambda: 1.0 if nats_connected() else 0.0)
        self.started = Counter("autospeak_calls_started", "Calls started (streams a session ran on)",
                               ["region", "resumed"], registry=r)
        self.ended = Counter("autospeak_calls_ended", "Calls ended, by disposition",
                             ["region", "disposition"], registry=r)
        self.turns = Counter("autospeak_turns", "Caller turns answered (or interrupted)",
                             ["region", "interrupted"], registry=r)
        self.barge_ins = Counter("autospeak_barge_ins", "Caller barge-ins over the agent", ["region"],
                                 registry=r)
        self.stage = Histogram("autospeak_turn_stage_seconds",
                               "Per-turn stage durations: vad_end (the caller's speech, VAD start to "
                               "end), endpointing, stt_final, first_token, first_audio, first_frame, "
                               "and voice_to_voice (caller's end of speech to the reply's first frame)",
                               ["region", "stage"], buckets=STAGE_BUCKETS, registry=r)
        self.lateness = BulkHistogram("autospeak_playout_frame_lateness_seconds",
                                      "Outbound frame lateness against the 20 ms pacing schedule (jitter)",
                                      region, LATENESS_BUCKETS)
        r.register(self.lateness)
        self.provider_errors = Counter("autospeak_provider_errors",
                                       "Provider failures seen by the call loop (stage: stt or reply; "
                                       "kind: error or timeout)", ["region", "stage", "kind"], registry=r)
        self.provider_attempts = Counter("autospeak_provider_attempts",
                                         "Attempts of providers behind a fallback chain",
                                         ["region", "kind", "outcome"], registry=r)
        self.handed_off = Counter("autospeak_worker_streams_moved",
                                  "Streams that ended here without ending their call (dropped or handed "
                                  "over to another worker)", ["region"], registry=r)


class BulkHistogram(Collector):
    """A histogram fed a whole call's values at once (one per frame: 3,000 a minute). Observing them
    one by one costs ~7 us each on the event loop at hang-up; this counts them with numpy instead."""

    def __init__(self, name: str, doc: str, region: str, buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.region = name, doc, region
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one is +Inf
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Iterable[float]) -> None:
        a = np.fromiter(values, dtype=np.float64)
        if not a.size:
            return
        a = np.maximum(a, 0.0)
        # Prometheus buckets are "less or equal": the first bound >= the value.
        counts = np.bincount(np.searchsorted(self.bounds, a, side="left"), minlength=len(self.counts))
        with self._lock:
            self.counts += counts
            self.sum += float(a.sum())

    def describe(self) -> list[Any]:
        return [HistogramMetricFamily(self.name, self.doc, labels=["region"])]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative, total = np.cumsum(self.counts), self.sum
        family = HistogramMetricFamily(self.name, self.doc, labels=["region"])
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        buckets = [(le, float(c)) for le, c in zip(les, cumulative, strict=True)]
        family.add_metric([self.region], buckets=buckets, sum_value=total)
        yield family
