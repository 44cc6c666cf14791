"""`WorkerTelemetry` (one per worker app) and its `CallObserver`s: one per call stream, fed the call's
events (`CallSession.emit`) next to the worker's own sink, turning them into metrics and spans.

An observer reads only event kinds, dispositions, stage timestamps and turn indexes; what the caller
said (`caller_text`, transcripts, tool arguments) never reaches a metric or a span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from cells.observability.metrics import WorkerMetrics
from cells.observability.traces import STAGE_SPANS, RecentTraces, build_tracing

log = logging.getLogger(__name__)


class WorkerTelemetry:
    def __init__(self, *, region: str, capacity: int, active: Callable[[], int],
                 nats_connected: Callable[[], bool] | None = None, max_traces: int = 200) -> None:
        self.region = region
        self.metrics = WorkerMetrics(region, capacity=capacity, active=active, nats_connected=nats_connected)
        self.recent = RecentTraces(max_traces)
        self.provider, self.tracer = build_tracing("autospeak-worker", region, self.recent)

    def call(self, *, call_id: str, tenant_id: str, agent_id: str,
             started_unix: Any = None) -> CallObserver:
        """`started_unix`: when the call began, for a call resumed from another worker (its stage
        timestamps count from there)."""
        try:
            started = float(started_unix) if started_unix is not None else None
        except (TypeError, ValueError):
            started = None  # a malformed saved state costs the resumed call its alignment, nothing more
        return CallObserver(self, call_id=call_id, tenant_id=tenant_id, agent_id=agent_id,
                            started_unix=started)

    def provider_attempt(self, kind: str, attempt: Any) -> None:
        """A fallback chain's observer (cells.providers.fallback.Observer): counts attempts by outcome;
        a failed attempt is a fallback to the next provider (or the apology when none is left)."""
        outcome = "ok" if getattr(attempt, "ok", False) else "failed"
        self.metrics.provider_attempts.labels(self.region, kind, outcome).inc()

    def watch_providers(self, *providers: Any) -> None:
        """Attaches `provider_attempt` to every fallback chain among `providers` that has no observer."""
        for p in providers:
            if hasattr(p, "observer") and getattr(p, "observer", None) is None:
                p.observer = self.provider_attempt

    def shutdown(self) -> None:
        self.provider.shutdown()


class CallObserver:
    def __init__(self, telemetry: WorkerTelemetry, *, call_id: str, tenant_id: str, agent_id: str,
                 started_unix: float | None) -> None:
        self.t = telemetry
        self.m = telemetry.metrics
        self.attributes = {"call_id": call_id, "tenant_id": tenant_id, "agent_id": agent_id,
                           "region": telemetry.region}
        self._started_unix = started_unix
        self._anchor_ns = 0  # unix ns of the call loop's zero (turn events count ms from it)
        self._root: Span | None = None
        self._ended = False
        self._finished = False

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """Never raises: telemetry must not break a call."""
        try:
            self._event(kind, data)
        except Exception:
            log.exception("telemetry: event %s not recorded", kind)

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        region = self.t.region
        if kind == "call_started":
            resumed = bool(data.get("resumed"))
            now_ns = time.time_ns()
            self._anchor_ns = int(self._started_unix * 1e9) if resumed and self._started_unix else now_ns
            self.m.started.labels(region, str(resumed).lower()).inc()
            self._root = self.t.tracer.start_span(
                "call", start_time=now_ns, attributes={**self.attributes, "resumed": resumed})
        elif kind == "turn":
            self._turn(data)
        elif kind == "barge_in":
            self.m.barge_ins.labels(region).inc()
        elif kind in ("provider_error", "provider_timeout"):
            stage = str(data.get("stage") or "reply")
            stage = stage if stage in ("stt", "reply") else "other"
            self.m.provider_errors.labels(region, stage, kind.removeprefix("provider_")).inc()
        elif kind == "call_ended":
            self._end(str(data.get("disposition") or "unknown"))

    def _turn(self, data: dict[str, Any]) -> None:
        region = self.t.region
        at_ms: dict[str, int] = data.get("at_ms") or {}
        interrupted = bool(data.get("interrupted"))
        self.m.turns.labels(region, str(interrupted).lower()).inc()
        for stage, a, b in STAGE_SPANS:
            if a in at_ms and b in at_ms:
                self.m.stage.labels(region, stage).observe(max(0, at_ms[b] - at_ms[a]) / 1000)
        if "speech_end" in at_ms and "first_frame_sent" in at_ms:
            v2v = max(0, at_ms["first_frame_sent"] - at_ms["speech_end"]) / 1000
            self.m.stage.labels(region, "voice_to_voice").observe(v2v)
        if self._root is None or not at_ms:
            return
        ns = {k: self._anchor_ns + int(v) * 1_000_000 for k, v in at_ms.items()}
        ctx = trace.set_span_in_context(self._root)
        turn = self.t.tracer.start_span("turn", context=ctx, start_time=min(ns.values()), attributes={
            **self.attributes, "turn.index": int(data.get("index", -1)), "turn.interrupted": interrupted})
        turn_ctx = trace.set_span_in_context(turn)
        for stage, a, b in STAGE_SPANS:
            if a in ns and b in ns:
                span = self.t.tracer.start_span(stage, context=turn_ctx, start_time=min(ns[a], ns[b]),
                                                attributes={**self.attributes, "stage": stage})
                span.end(end_time=ns[b])
        turn.end(end_time=max(ns.values()))

    def _end(self, disposition: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.m.ended.labels(self.t.region, disposition).inc()
        if self._root is not None:
            self._root.set_attribute("disposition", disposition)
            self._root.end()

    def finished(self, session: Any) -> None:
        """The stream is over (after the session stopped): frame pacing, and the root span of a call
        whose stream ended without ending the call (dropped, or handed over to another worker)."""
        if self._finished:
            return
        self._finished = True
        try:
            playout = getattr(session, "playout", None)
            lateness = playout.stats.lateness if playout is not None else ()
            self.m.lateness.observe_many(lateness)
            if not self._ended and self._root is not None:
                self._ended = True
                self.m.handed_off.labels(self.t.region).inc()
                self._root.set_attribute("stream_moved", True)
                self._root.end()
        except Exception:
            log.exception("telemetry: call end not recorded")
