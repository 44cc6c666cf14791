"""Metrics and traces across a regional cell: one real call through the eu cell of the embedded stack
(PostgreSQL, NATS, the cell's control plane and its pool worker), then the control plane's and the
worker's /metrics and the worker's traces, as Prometheus and the dashboard would read them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from cell_stack import place_call, running_stack, wait_completed, wait_for
from prometheus_client.parser import text_string_to_metric_families

from cells.launcher.stack import EmbeddedStack


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(workers=1, capacity=2) as s:
        yield s


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(r.text) for s in f.samples]


def total(m: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in m if n == name and labels.items() <= ls.items())


def test_a_cell_call_shows_in_the_control_and_worker_metrics_and_traces(stack: EmbeddedStack) -> None:
    api, worker = stack.api_url("eu"), stack.cells["eu"].workers[0].url
    placed = asyncio.run(place_call(stack, "eu", "hours"))
    call_id = wait_completed(stack, "eu", placed.call_sid)

    control = scrape(api)
    assert total(control, "autospeak_voice_slot_request_seconds_count", outcome="accepted") >= 1
    assert total(control, "autospeak_api_request_seconds_count", route="/twilio/voice", status="200") >= 1
    assert total(control, "autospeak_event_lag_seconds_count", source="worker") >= 3  # started, turn, ended
    assert total(control, "autospeak_event_lag_seconds_count", source="control") >= 1  # call_created
    assert total(control, "autospeak_events_consumed_total", outcome="applied") >= 4
    assert total(control, "autospeak_nats_up") == 1 and total(control, "autospeak_database_up") == 1
    assert total(control, "autospeak_event_consumer_running") == 1
    assert total(control, "autospeak_event_consumer_pending") >= 0  # read from JetStream (-1: unknown)
    assert total(control, "autospeak_webhook_dispatcher_running") == 1

    def ended() -> list[tuple[str, dict[str, str], float]] | None:
        m = scrape(worker)
        return m if total(m, "autospeak_calls_ended_total") >= 1 else None

    w = wait_for(ended, timeout=30, what="the worker to count the call ended")
    assert total(w, "autospeak_worker_nats_up") == 1
    assert total(w, "autospeak_worker_capacity_calls") == 2
    assert total(w, "autospeak_turn_stage_seconds_count", stage="first_frame") >= 1
    assert total(w, "autospeak_turn_stage_seconds_count", stage="voice_to_voice") >= 1

    traces = httpx.get(worker + "/traces/recent", params={"call_id": call_id}, timeout=10).json()["traces"]
    assert len(traces) == 1
    spans = traces[0]["spans"]
    assert {s["attributes"]["tenant_id"] for s in spans} == {stack.demo["eu"].tenant_id}
    assert {s["attributes"]["region"] for s in spans} == {"eu"}
    assert any(s["name"] == "first_frame" for s in spans)
    assert stack.demo["eu"].number not in str(traces)
