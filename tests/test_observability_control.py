"""The control plane's /metrics on a real control API app (embedded PostgreSQL): request latency by
route template with no ids in it, database health, and the optional operator token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from control_api_fixtures import Api, control_api, serving, settings_for
from prometheus_client.parser import text_string_to_metric_families

from control.observability.metrics import ControlMetrics


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api() as a:
        yield a


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def count(metrics: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in metrics if n == name and labels.items() <= ls.items())


def test_metrics_has_request_latency_by_route_template_and_no_tenant_data(api: Api) -> None:
    agents = api.tenant_path("a", "/agents")
    assert api.call("GET", agents, token=api.tokens["a:owner"]).status == 200
    assert api.call("GET", agents).status == 401
    missing = api.tenant_path("a", f"/agents/{uuid.uuid4()}")
    assert api.call("GET", missing, token=api.tokens["a:owner"]).status == 404
    reply = api.call("GET", "/metrics")  # no tenant token needed
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    m = samples(reply.text)
    route = "/v1/tenants/<uuid:tenant_id>/agents"
    assert count(m, "autospeak_api_request_seconds_count", route=route, method="GET", status="200") >= 1
    assert count(m, "autospeak_api_request_seconds_count", route=route, method="GET", status="401") >= 1
    assert count(m, "autospeak_api_request_seconds_count",
                 route="/v1/tenants/<uuid:tenant_id>/agents/<uuid:agent_id>", status="404") >= 1
    assert count(m, "autospeak_database_up", region="eu") == 1.0
    # Route templates only: no tenant id, no token, no raw path anywhere in the exposition.
    for tenant in api.tenants.values():
        assert str(tenant) not in reply.text
    assert api.tokens["a:owner"] not in reply.text
    routes = {ls["route"] for _, ls, _ in m if "route" in ls}
    assert all(r.startswith("/v1/tenants/<uuid:tenant_id>") for r in routes if r.startswith("/v1/tenants/"))


def test_an_unknown_method_or_path_does_not_grow_the_labels(api: Api) -> None:
    api.call("BREW", "/coffee")
    api.call("GET", f"/no/such/{uuid.uuid4()}")
    m = samples(api.call("GET", "/metrics").text)
    routes = {ls["route"] for n, ls, _ in m if n == "autospeak_api_request_seconds_count"}
    methods = {ls["method"] for n, ls, _ in m if n == "autospeak_api_request_seconds_count"}
    assert "unmatched" in routes and not any("/no/such" in r or "coffee" in r for r in routes)
    assert "BREW" not in methods


def test_an_operator_token_when_configured_guards_metrics(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSPEAK_METRICS_TOKEN", "operator-" + "s" * 32)
    with serving(api.db, settings_for(api.db)) as app:
        guarded = Api(api.db, app)
        assert guarded.call("GET", "/metrics").status == 401
        assert guarded.call("GET", "/metrics", token=api.tokens["a:owner"]).status == 401  # a tenant's
        ok = guarded.call("GET", "/metrics", token="operator-" + "s" * 32)
        assert ok.status == 200 and "autospeak_database_up" in ok.text


def test_runtime_health_and_event_lag_are_reported() -> None:
    """The cell's parts (fed by CellRuntime.health) as metric families; lag from the event's time."""
    from cells.contract.envelope import CallEventEnvelope

    metrics = ControlMetrics("eu")
    metrics.watch_runtime(lambda: {
        "nats": True, "consumer": {"running": True, "applied": 7, "rejected": 1},
        "webhooks": {"running": False, "delivered": 3, "failed": 2, "retrying": 0, "poll_errors": 0}})
    event = CallEventEnvelope.new(call_id=str(uuid.uuid4()), tenant_id=str(uuid.uuid4()), region="eu",
                                  kind="turn", event_id="e-1", source="worker-1", data={})
    metrics.event_applied(event, now=event.occurred_at + 0.2)
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    m = samples(text)
    assert count(m, "autospeak_nats_up") == 1.0
    assert count(m, "autospeak_events_consumed_total", outcome="applied") == 7
    assert count(m, "autospeak_webhook_deliveries_total", outcome="failed") == 2
    assert count(m, "autospeak_webhook_dispatcher_running") == 0.0
    assert count(m, "autospeak_event_lag_seconds_count", source="worker") == 1
    assert count(m, "autospeak_event_lag_seconds_sum", source="worker") == pytest.approx(0.2)
    assert count(m, "autospeak_event_lag_seconds_bucket", source="worker", le="0.1") == 0
    assert event.tenant_id not in text and "worker-1" not in text
