"""The load generator's own Prometheus figures, and what it reads from the workers' /metrics.

The generator keeps a registry of its own (never the process default), exposed on a port while it runs
(`--metrics-port`) and written into the report, so that an SRE sees what the callers heard beside what
the worker says it did: calls up and failed, voice to voice as the caller hears it, frame lateness at
the phone, and the generator's own timer lag (a busy generator would look like a slow worker).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

V2V_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0)
LATENESS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
WORKER_LATENESS = "autospeak_playout_frame_lateness_seconds"
WORKER_ACTIVE = "autospeak_worker_active_calls"
WORKER_STAGES = "autospeak_turn_stage_seconds"  # its stage="voice_to_voice" is the worker's own v2v


class LoadgenMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.level = Gauge("autospeak_loadgen_level_calls", "Concurrent calls the current level places",
                           registry=r)
        self.active = Gauge("autospeak_loadgen_calls_active", "Simulated calls with their media stream open",
                            registry=r)
        self.started = Counter("autospeak_loadgen_calls_started", "Simulated calls whose stream opened",
                               registry=r)
        self.failed = Counter("autospeak_loadgen_calls_failed",
                              "Simulated calls refused or broken (no agent audio)", ["reason"], registry=r)
        self.v2v = Histogram("autospeak_loadgen_voice_to_voice_seconds",
                             "Caller's last frame -> first agent frame heard, at the phone", ["level"],
                             buckets=V2V_BUCKETS, registry=r)
        self.lateness = Histogram("autospeak_loadgen_frame_lateness_seconds",
                                  "How much longer than 20 ms the phone waited for an agent frame", ["level"],
                                  buckets=LATENESS_BUCKETS, registry=r)
        self.timer_lag = Gauge("autospeak_loadgen_timer_lag_p99_seconds",
                               "p99 lateness of the generator's own 20 ms timers in the last level",
                               registry=r)
        self.worker_cpu = Gauge("autospeak_loadgen_worker_cpu_ratio",
                                "CPU the region's workers used during the last level (1 = one core)",
                                registry=r)

    def observe_level(self, calls: int, v2v_ms: Iterable[float], lateness_ms: Iterable[float],
                      timer_lag_p99_ms: float | None, worker_cpu_pct: float) -> None:
        label = str(calls)
        for ms in v2v_ms:
            self.v2v.labels(label).observe(ms / 1000)
        for ms in lateness_ms:
            self.lateness.labels(label).observe(ms / 1000)
        if timer_lag_p99_ms is not None:
            self.timer_lag.set(timer_lag_p99_ms / 1000)
        self.worker_cpu.set(worker_cpu_pct / 100)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def serve(metrics: LoadgenMetrics, port: int, addr: str = "127.0.0.1") -> object:
    """Expose the generator's registry on http://ADDR:PORT/metrics; returns the server (to shut down)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return server


# -- reading a worker's /metrics -------------------------------------------------------------------
def histogram_buckets(text: str, name: str, **match: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram `name`, summed over its label sets that carry the labels
    of `match` (le -> count)."""
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == name + "_bucket" and all(sample.labels.get(k) == v for k, v in match.items()):
                le = float(sample.labels["le"])
                out[le] = out.get(le, 0.0) + sample.value
    return out


def gauge_sum(text: str, name: str) -> float | None:
    values = [s.value for f in text_string_to_metric_families(text) if f.name == name for s in f.samples]
    return sum(values) if values else None


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile q of what was observed between two scrapes
    (a histogram answers no finer than its buckets): inf when it lies past the last bound, None when
    nothing was observed."""
    delta = sorted((le, after.get(le, 0.0) - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return None
    for le, count in delta:
        if count >= q * total:
            return le
    return None
