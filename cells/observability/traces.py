"""Per-call traces with the OpenTelemetry SDK: a root span per call, a child per turn, and under it
one span per stage, placed at the stage timestamps the call loop measured (cells/call/timeline.py).

Spans are built when a turn's `turn` event arrives (after its reply), never per audio frame, so the
SDK costs a few span objects per turn and nothing on the 20 ms path. Every process keeps its recent
traces in memory (`RecentTraces`, served at GET /traces/recent for the dashboard); when
OTEL_EXPORTER_OTLP_ENDPOINT is set they are also exported over OTLP/HTTP in batches.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Tracer

# (stage, from mark, to mark): the marks are TurnTiming's; a stage exists when both were reached.
STAGE_SPANS = (
    ("vad_end", "speech_start", "speech_end"),
    ("endpointing", "speech_end", "turn_end"),
    ("stt_final", "turn_end", "stt_final"),
    ("first_token", "stt_final", "first_token"),
    ("first_audio", "first_token", "first_tts_audio"),
    ("first_frame", "first_tts_audio", "first_frame_sent"),
)


class RecentTraces(SpanExporter):
    """The last `max_traces` traces of this process, in memory (bounded: spans per trace too)."""

    def __init__(self, max_traces: int = 200, max_spans: int = 2000) -> None:
        self.max_traces, self.max_spans = max_traces, max_spans
        self._traces: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()  # BatchSpanProcessor exports from its own thread

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            for span in spans:
                ctx = span.get_span_context()
                if ctx is None:
                    continue
                trace = self._traces.get(ctx.trace_id)
                if trace is None:
                    trace = self._traces[ctx.trace_id] = []
                    while len(self._traces) > self.max_traces:
                        self._traces.popitem(last=False)
                if len(trace) < self.max_spans:
                    trace.append(_span_dict(span))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def recent(self, limit: int = 50, call_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first: {"trace_id", "call_id", "spans": [...]}."""
        out: list[dict[str, Any]] = []
        with self._lock:
            items = list(self._traces.items())
        for trace_id, spans in reversed(items):
            ids = {s["attributes"].get("call_id") for s in spans} - {None}
            cid = next(iter(ids), None)
            if call_id is not None and cid != call_id:
                continue
            out.append({"trace_id": f"{trace_id:032x}", "call_id": cid,
                        "spans": sorted(spans, key=lambda s: s["start_unix_nano"])})
            if len(out) >= limit:
                break
        return out


def _span_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    start, end = span.start_time or 0, span.end_time or 0
    return {"name": span.name, "span_id": f"{ctx.span_id:016x}" if ctx else None,
            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
            "start_unix_nano": start, "end_unix_nano": end, "duration_ms": round((end - start) / 1e6, 1),
            "attributes": dict(span.attributes or {}),
            "status": span.status.status_code.name}


def build_tracing(service: str, region: str, recent: RecentTraces) -> tuple[TracerProvider, Tracer]:
    """A tracer provider of this app's own (not the global one), exporting to `recent` and, when
    OTEL_EXPORTER_OTLP_ENDPOINT (or the traces-specific variable) is set, over OTLP/HTTP."""
    provider = TracerProvider(resource=Resource.create({"service.name": service, "cloud.region": region}),
                              shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(recent))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider, provider.get_tracer("autospeak.call")
