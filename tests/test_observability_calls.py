"""The worker's call observer on given events (no call needed): exact stage observations and spans,
what a span must not carry, calls whose stream ended elsewhere, fallbacks, and the operator token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cells.observability import WorkerTelemetry
from cells.providers.base import AudioChunk
from cells.providers.fallback import FallbackTts

SECRET_WORDS = "my card number is 4111 1111 1111 1111"
AT_MS = {"speech_start": 1000, "speech_end": 2500, "turn_end": 3100, "stt_final": 3300,
         "first_token": 3350, "first_tts_audio": 3500, "first_frame_sent": 3540}


def telemetry() -> WorkerTelemetry:
    return WorkerTelemetry(region="eu", capacity=4, active=lambda: 1)


def metrics(t: WorkerTelemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(t.metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def one(m: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in m.items() if n == name and set(labels.items()) <= set(ls))


def run_call(t: WorkerTelemetry, *, end: bool = True) -> Any:
    obs = t.call(call_id="call-1", tenant_id="tenant-1", agent_id="agent-1")
    obs.event("call_started", {"call_sid": "CA1", "stream_sid": "MZ1", "resumed": False})
    obs.event("transcript", {"text": SECRET_WORDS, "turn": 0})
    obs.event("turn", {"index": 0, "caller_text": SECRET_WORDS, "agent_text": "Thanks.",
                       "interrupted": False, "at_ms": AT_MS, "ms_after_speech_end": {}})
    obs.event("provider_error", {"stage": "stt", "error": SECRET_WORDS})
    obs.event("provider_timeout", {"turn": 0})
    obs.event("barge_in", {"heard": SECRET_WORDS})
    if end:
        obs.event("call_ended", {"disposition": "completed", "turns": 1})
    return obs


def test_stage_durations_are_observed_from_the_turn_timestamps() -> None:
    t = telemetry()
    run_call(t)
    m = metrics(t)
    expected = {"vad_end": 1.5, "endpointing": 0.6, "stt_final": 0.2, "first_token": 0.05,
                "first_audio": 0.15, "first_frame": 0.04, "voice_to_voice": 1.04}
    for stage, seconds in expected.items():
        assert one(m, "autospeak_turn_stage_seconds_count", stage=stage) == 1, stage
        assert one(m, "autospeak_turn_stage_seconds_sum", stage=stage) == pytest.approx(seconds), stage
    assert one(m, "autospeak_calls_started_total", resumed="false") == 1
    assert one(m, "autospeak_calls_ended_total", disposition="completed") == 1
    assert one(m, "autospeak_provider_errors_total", stage="stt", kind="error") == 1
    assert one(m, "autospeak_provider_errors_total", stage="reply", kind="timeout") == 1
    assert one(m, "autospeak_barge_ins_total") == 1
    assert one(m, "autospeak_worker_load_ratio") == 0.25
    text = generate_latest(t.metrics.registry).decode()
    assert "call-1" not in text and "tenant-1" not in text and "4111" not in text


def test_a_turn_has_one_span_per_stage_at_its_timestamps_and_no_words() -> None:
    t = telemetry()
    run_call(t)
    (trace,) = t.recent.recent(call_id="call-1")
    spans = trace["spans"]
    (root,) = [s for s in spans if s["name"] == "call"]
    (turn,) = [s for s in spans if s["name"] == "turn"]
    stages = {s["name"]: s for s in spans if s["parent_id"] == turn["span_id"]}
    assert turn["parent_id"] == root["span_id"] and len(stages) == 6
    zero = turn["start_unix_nano"] - AT_MS["speech_start"] * 1_000_000  # the call loop's zero
    marks = [("vad_end", "speech_start", "speech_end"), ("endpointing", "speech_end", "turn_end"),
             ("stt_final", "turn_end", "stt_final"), ("first_token", "stt_final", "first_token"),
             ("first_audio", "first_token", "first_tts_audio"),
             ("first_frame", "first_tts_audio", "first_frame_sent")]
    for name, a, b in marks:
        assert stages[name]["start_unix_nano"] == zero + AT_MS[a] * 1_000_000, name
        assert stages[name]["end_unix_nano"] == zero + AT_MS[b] * 1_000_000, name
        assert stages[name]["attributes"] == {"call_id": "call-1", "tenant_id": "tenant-1",
                                              "agent_id": "agent-1", "region": "eu", "stage": name}
    assert root["attributes"]["disposition"] == "completed"
    dumped = json.dumps(trace)
    assert "4111" not in dumped and "Thanks." not in dumped and "CA1" not in dumped


def test_a_stream_that_ends_without_its_call_is_not_counted_as_an_ended_call() -> None:
    t = telemetry()
    obs = run_call(t, end=False)

    lateness = [0.0005, 0.001, 0.003, -0.001, 0.5]
    session = SimpleNamespace(playout=SimpleNamespace(stats=SimpleNamespace(lateness=lateness)))
    obs.finished(session)
    obs.finished(session)  # once only
    m = metrics(t)
    assert one(m, "autospeak_calls_ended_total") == 0
    assert one(m, "autospeak_worker_streams_moved_total") == 1
    # Buckets are "less or equal"; early frames (negative) count as on time; once per stream.
    assert one(m, "autospeak_playout_frame_lateness_seconds_count") == 5
    assert one(m, "autospeak_playout_frame_lateness_seconds_bucket", le="0.001") == 3
    assert one(m, "autospeak_playout_frame_lateness_seconds_bucket", le="0.005") == 4
    assert one(m, "autospeak_playout_frame_lateness_seconds_bucket", le="0.32") == 4
    assert one(m, "autospeak_playout_frame_lateness_seconds_bucket", le="+Inf") == 5
    assert one(m, "autospeak_playout_frame_lateness_seconds_sum") == pytest.approx(0.5045)
    (root,) = [s for s in t.recent.recent()[0]["spans"] if s["name"] == "call"]
    assert root["attributes"]["stream_moved"] is True


def test_a_broken_event_does_not_break_the_call() -> None:
    t = telemetry()
    obs = t.call(call_id="c", tenant_id="t", agent_id="a")
    obs.event("call_started", {"resumed": False})
    obs.event("turn", {"index": 0, "at_ms": {"speech_end": "not a number", "first_frame_sent": 5}})
    obs.event("call_ended", {"disposition": "completed"})
    assert one(metrics(t), "autospeak_calls_ended_total") == 1


class _Tts:
    sample_rate = 8000

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def synthesize(self, text: str, voice_id: str | None = None) -> AsyncIterator[AudioChunk]:
        if self.fail:
            raise RuntimeError("vendor down")
        yield AudioChunk(np.zeros(160, np.int16), 8000)


def test_fallbacks_are_counted_when_a_chain_is_watched() -> None:
    t = telemetry()
    tts = FallbackTts([("primary", _Tts(True)), ("backup", _Tts(False))])
    t.watch_providers(tts, object())

    async def speak() -> None:
        async for _ in tts.synthesize("hello"):
            pass

    asyncio.run(speak())
    m = metrics(t)
    assert one(m, "autospeak_provider_attempts_total", kind="tts", outcome="failed") == 1
    assert one(m, "autospeak_provider_attempts_total", kind="tts", outcome="ok") == 1


def test_worker_metrics_and_traces_need_the_operator_token_when_set(tmp_path: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from cells.worker.app import WorkerSettings, create_app

    monkeypatch.setenv("AUTOSPEAK_METRICS_TOKEN", "op-" + "t" * 32)
    app = create_app(WorkerSettings(public_base_url="http://127.0.0.1:1", twilio_auth_token="x" * 32,
                                    data_dir=tmp_path))

    async def get(path: str, token: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return (await app.test_client().get(path, headers=headers)).status_code

    for path in ("/metrics", "/traces/recent"):
        assert asyncio.run(get(path)) == 401
        assert asyncio.run(get(path, "wrong")) == 401
        assert asyncio.run(get(path, "op-" + "t" * 32)) == 200
    assert asyncio.run(get("/traces/recent?limit=x", "op-" + "t" * 32)) == 400


def test_traces_go_out_over_otlp_when_an_endpoint_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real OTLP/HTTP receiver on loopback gets the call's spans (protobuf), ids and all, no words."""
    import http.server
    import threading

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        t = telemetry()
        run_call(t)
        t.shutdown()  # flushes the batch
    finally:
        server.shutdown()
    assert received and all(path == "/v1/traces" for path, _ in received)
    spans = []
    for _, body in received:
        req = ExportTraceServiceRequest.FromString(body)
        spans += [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    names = sorted(s.name for s in spans)
    assert names == sorted(["call", "turn", "vad_end", "endpointing", "stt_final", "first_token",
                            "first_audio", "first_frame"])
    for s in spans:
        attrs = {a.key: a.value.string_value for a in s.attributes}
        assert attrs["call_id"] == "call-1" and attrs["tenant_id"] == "tenant-1"
    assert not any(b"4111" in body for _, body in received)


def test_a_resumed_call_places_its_stages_from_when_the_call_began() -> None:
    """A call resumed on this worker counts its stage times from the call's start on the first one."""
    t = telemetry()
    began = 1_700_000_000.0
    obs = t.call(call_id="call-r", tenant_id="t", agent_id="a", started_unix=began)
    obs.event("call_started", {"resumed": True})
    obs.event("turn", {"index": 3, "interrupted": False, "at_ms": AT_MS})
    spans = t.recent.recent(call_id="call-r")[0]["spans"]
    (stage,) = [s for s in spans if s["name"] == "first_frame"]
    assert stage["end_unix_nano"] == int(began * 1e9) + AT_MS["first_frame_sent"] * 1_000_000
    assert one(metrics(t), "autospeak_calls_started_total", resumed="true") == 1
    bad = t.call(call_id="call-x", tenant_id="t", agent_id="a", started_unix="garbage")
    bad.event("call_started", {"resumed": True})
    assert one(metrics(t), "autospeak_calls_started_total", resumed="true") == 2
