"""Webhook endpoints and the delivery log on the real embedded PostgreSQL."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from control_api_fixtures import FAST, Api, api_with, control_api, fetch, insert, scope_for
from standardwebhooks.webhooks import Webhook

from control.db.models import AuditLog, IdempotencyKey, WebhookDelivery, WebhookEndpoint

URL = "https://hooks.example.com/autospeak?team=ops"


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    # The production policy (the default): public https targets only.
    with control_api(**FAST) as api:
        yield api


@pytest.fixture(scope="module")
def dev(api: Api) -> Iterator[Api]:
    """The same tenants behind an app that allows loopback/private http targets (dev stack, tests)."""
    with api_with(api, allow_private_webhooks=True) as app:
        yield app


def _create(api: Api, label: str = "a", **body: object) -> dict:
    token = api.tokens["a:admin" if label == "a" else f"{label}:owner"]
    r = api.call("POST", api.tenant_path(label, "/webhook-endpoints"), token=token, json={"url": URL, **body})
    assert r.status == 201, r.text
    return r.body


def _delivery(api: Api, endpoint_id: str, label: str = "a", **values: object) -> WebhookDelivery:
    scope = scope_for(api, label)
    fields = {
        "endpoint_id": uuid.UUID(endpoint_id),
        "event_id": f"{uuid.uuid4()}:created",
        "event_type": "call.created",
        "payload": {"type": "call.created"},
        "status": "failed",
        "attempts": 5,
        "response_status": 500,
        "last_error": "HTTP 500",
        "next_attempt_at": None,
        **values,
    }
    row = scope.new(WebhookDelivery, **fields)
    insert(api, label, row)
    return row


def test_the_signing_secret_is_shown_once_and_signs_standard_webhooks(api: Api) -> None:
    key = {"Idempotency-Key": f"w-{uuid.uuid4()}"}
    body = {"url": URL, "event_types": ["call.ended", "call.created", "call.ended"]}
    path = api.tenant_path("a", "/webhook-endpoints")
    r = api.call("POST", path, token=api.tokens["a:admin"], json=body, headers=key)
    assert r.status == 201, r.text
    secret = r.body["signing_secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[len("whsec_") :])) == 24
    assert r.body["event_types"] == ["call.created", "call.ended"] and r.body["enabled"] is True
    # A receiver using the Standard Webhooks library verifies what this secret signs.
    hook = Webhook(secret)
    payload = json.dumps({"type": "call.ended"})
    now = datetime.now(UTC)
    sig = hook.sign("msg_1", now, payload)
    hook.verify(
        payload,
        {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": sig},
    )

    viewer = api.tokens["a:viewer"]
    got = api.call("GET", api.tenant_path("a", f"/webhook-endpoints/{r.body['id']}"), token=viewer)
    assert got.status == 200 and "signing_secret" not in got.body and secret not in got.text
    listed = api.call("GET", path + "?limit=100", token=viewer)
    assert secret not in listed.text and r.body["id"] in [e["id"] for e in listed.body["items"]]
    replay = api.call("POST", path, token=api.tokens["a:admin"], json=body, headers=key)
    assert replay.status == 201 and replay.body["id"] == r.body["id"] and "signing_secret" not in replay.body
    [idem] = fetch(api, IdempotencyKey, key=key["Idempotency-Key"])
    assert secret not in json.dumps(idem.response_body)
    [audit] = fetch(api, AuditLog, action="webhook_endpoint.create", target_id=r.body["id"])
    assert secret not in json.dumps(audit.details)
    [row] = fetch(api, WebhookEndpoint, id=uuid.UUID(r.body["id"]))
    assert row.signing_secret == secret  # the dispatcher needs it to sign


def test_validation(api: Api) -> None:
    path = api.tenant_path("a", "/webhook-endpoints")
    admin = api.tokens["a:admin"]
    for body, field in (
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "https:///nohost"}, "url"),
        ({"url": "https://h.example.com/a b"}, "url"),
        ({"url": "https://h.example.com:99999/"}, "url"),
        ({"url": "https://h.example.com/#frag"}, "url"),
        ({"url": 5}, "url"),
        ({"url": URL, "event_types": ["call.exploded"]}, "event_types.0"),
        ({"url": URL, "event_types": "call.created"}, "event_types"),
        ({"url": URL, "secret": "mine"}, "secret"),
        ({}, "url"),
    ):
        r = api.call("POST", path, token=admin, json=body)
        assert r.status == 422 and r.body["errors"][0]["path"] == field, (body, r.text)
    assert _create(api, event_types=[])["event_types"] == []  # empty: every event type


def test_roles(api: Api) -> None:
    ep = _create(api)
    path = api.tenant_path("a", f"/webhook-endpoints/{ep['id']}")
    for role in ("viewer", "operator"):
        token = api.tokens[f"a:{role}"]
        assert (
            api.call(
                "POST", api.tenant_path("a", "/webhook-endpoints"), token=token, json={"url": URL}
            ).status
            == 403
        )
        assert api.call("PATCH", path, token=token, json={"enabled": False}).status == 403
        assert api.call("DELETE", path, token=token).status == 403
        assert api.call("GET", path + "/deliveries", token=token).status == 200


def test_update_and_delete(api: Api) -> None:
    ep = _create(api, event_types=["call.created"])
    path = api.tenant_path("a", f"/webhook-endpoints/{ep['id']}")
    admin = api.tokens["a:admin"]
    r = api.call("PATCH", path, token=admin, json={"enabled": False, "event_types": ["recording.ready"]})
    assert r.status == 200, r.text
    assert (r.body["enabled"], r.body["event_types"], r.body["url"]) == (False, ["recording.ready"], URL)
    r = api.call("PATCH", path, token=admin, json={"url": "https://hooks.example.net/new?token=t0p"})
    assert r.body["url"] == "https://hooks.example.net/new?token=t0p" and r.body["enabled"] is False
    for bad, field in (
        ({"url": None}, "url"),
        ({"enabled": "no"}, "enabled"),
        ({"signing_secret": "x"}, "signing_secret"),
    ):
        r = api.call("PATCH", path, token=admin, json=bad)
        assert r.status == 422 and r.body["errors"][0]["path"] == field, (bad, r.text)
    delivery = _delivery(api, ep["id"])
    assert api.call("DELETE", path, token=admin).status == 204
    assert api.call("GET", path, token=admin).status == 404
    assert fetch(api, WebhookDelivery, id=delivery.id) == []  # the log goes with the endpoint
    # The routes' own rows; a refused or invalid request has a row of its own, with an `outcome`.
    actions = sorted(a.action for a in fetch(api, AuditLog, target_id=ep["id"]) if "outcome" not in a.details)
    assert actions == [
        "webhook_endpoint.create",
        "webhook_endpoint.delete",
        "webhook_endpoint.update",
        "webhook_endpoint.update",
    ]
    # Audit rows keep the URL's origin only: its path and query may carry the receiver's token.
    audits = fetch(api, AuditLog, target_id=ep["id"])
    assert "t0p" not in json.dumps([a.details for a in audits])
    [create] = [a for a in audits if a.action == "webhook_endpoint.create"]
    assert create.details["url"] == "https://hooks.example.com"
    assert {"url": "https://hooks.example.net"} in [
        a.details["changed"] for a in audits if "changed" in a.details
    ]


def test_delivery_log_and_retry(api: Api) -> None:
    ep = _create(api)
    old = _delivery(api, ep["id"], created_at=datetime.now(UTC) - timedelta(hours=1))
    new = _delivery(
        api,
        ep["id"],
        status="delivered",
        attempts=1,
        response_status=204,
        last_error=None,
        delivered_at=datetime.now(UTC),
    )
    base = api.tenant_path("a", f"/webhook-endpoints/{ep['id']}/deliveries")
    viewer, op = api.tokens["a:viewer"], api.tokens["a:operator"]
    r = api.call("GET", base, token=viewer)
    assert [d["id"] for d in r.body["items"]] == [str(new.id), str(old.id)]
    failed = r.body["items"][1]
    assert (failed["status"], failed["attempts"], failed["response_status"], failed["last_error"]) == (
        "failed",
        5,
        500,
        "http_error",
    )
    assert [d["id"] for d in api.call("GET", base + "?status=failed", token=viewer).body["items"]] == [
        str(old.id)
    ]
    assert api.call("GET", base + "?status=%00", token=viewer).status == 422

    assert api.call("POST", f"{base}/{old.id}/retry", token=viewer).status == 403
    before = datetime.now(UTC)
    r = api.call("POST", f"{base}/{old.id}/retry", token=op)
    assert r.status == 202, r.text
    assert r.body["status"] == "pending" and r.body["attempts"] == 5 and r.body["last_error"] == "http_error"
    assert (
        before - timedelta(seconds=1)
        <= datetime.fromisoformat(r.body["next_attempt_at"])
        <= datetime.now(UTC)
    )
    [row] = fetch(api, WebhookDelivery, id=old.id)
    assert row.status == "pending" and row.next_attempt_at is not None
    [audit] = fetch(api, AuditLog, action="webhook_delivery.retry", target_id=str(old.id))
    assert audit.details["previous_status"] == "failed"
    # A delivery named under another endpoint of the same tenant is not found.
    other = _create(api)
    r = api.call(
        "POST", api.tenant_path("a", f"/webhook-endpoints/{other['id']}/deliveries/{old.id}/retry"), token=op
    )
    assert r.status == 404


def test_retry_refuses_a_delivery_in_flight_or_delivered(api: Api) -> None:
    ep = _create(api)
    base = api.tenant_path("a", f"/webhook-endpoints/{ep['id']}/deliveries")
    op = api.tokens["a:operator"]
    now = datetime.now(UTC)
    # Claimed by a dispatcher: still pending, the attempt counted, next_attempt_at a lease ahead.
    held = _delivery(
        api,
        ep["id"],
        status="pending",
        attempts=1,
        last_error=None,
        response_status=None,
        next_attempt_at=now + timedelta(seconds=70),
    )
    # Waiting for (or in) an automatic retry: the same state either way.
    retrying = _delivery(
        api, ep["id"], status="retrying", attempts=2, next_attempt_at=now + timedelta(minutes=5)
    )
    done = _delivery(
        api, ep["id"], status="delivered", attempts=1, response_status=200, last_error=None, delivered_at=now
    )
    for row, slug in (
        (held, "delivery-in-flight"),
        (retrying, "delivery-in-flight"),
        (done, "delivery-already-delivered"),
    ):
        r = api.call("POST", f"{base}/{row.id}/retry", token=op)
        assert r.status == 409 and r.body["type"].endswith(slug), r.text
        assert r.headers["Content-Type"] == "application/problem+json"
        [after] = fetch(api, WebhookDelivery, id=row.id)
        assert (after.status, after.attempts, after.next_attempt_at) == (
            row.status,
            row.attempts,
            row.next_attempt_at,
        )
    assert fetch(api, AuditLog, action="webhook_delivery.retry", target_id=str(held.id)) == []
    # Pending and due (nobody holds it): accepted, it stays due.
    due = _delivery(
        api,
        ep["id"],
        status="pending",
        attempts=0,
        last_error=None,
        response_status=None,
        next_attempt_at=now - timedelta(seconds=1),
    )
    r = api.call("POST", f"{base}/{due.id}/retry", token=op)
    assert r.status == 202 and r.body["status"] == "pending" and r.body["attempts"] == 0


def test_the_delivery_log_shows_error_categories_not_raw_errors(api: Api) -> None:
    ep = _create(api)
    cases = {
        "ConnectError: [Errno 111] Connection refused": "connection_failed",
        "ConnectError: [Errno -2] Name or service not known": "connection_failed",
        "RemoteProtocolError: Server disconnected without sending a response.": "connection_failed",
        "ConnectTimeout: timed out": "timeout",
        "ReadTimeout": "timeout",
        "ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed": "tls_error",
        "HTTP 503": "http_error",
        "the endpoint is disabled": "endpoint_disabled",
        "the endpoint's signing secret is not valid": "invalid_endpoint",
        "refusing to send to a non-http(s) URL": "invalid_endpoint",
        "the URL's host must be a public internet address, not a loopback, private, link-local or "
        "reserved one": "address_not_allowed",
        "something nobody foresaw": "delivery_failed",
    }
    for raw in cases:
        _delivery(api, ep["id"], last_error=raw, response_status=None)
    r = api.call(
        "GET",
        api.tenant_path("a", f"/webhook-endpoints/{ep['id']}/deliveries?limit=100"),
        token=api.tokens["a:viewer"],
    )
    assert r.status == 200
    assert sorted(d["last_error"] for d in r.body["items"]) == sorted(cases.values())
    for raw in cases:
        if raw not in cases.values():
            assert raw not in r.text
    assert "Errno" not in r.text and "refused" not in r.text
    schema = api.call("GET", "/openapi.json").body["components"]["schemas"]["WebhookDeliveryOut"]
    assert "connection_failed" in json.dumps(schema["properties"]["last_error"])


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1:4222/",
        "https://[::1]:8222/varz",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/",
        "https://100.64.0.1/",
        "https://[::ffff:127.0.0.1]/",
        "https://2130706433/",
        "https://localhost:5432/",
        "https://nats:8222/",
        "https://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_webhook_urls_must_be_public_https(api: Api, url: str) -> None:
    path = api.tenant_path("a", "/webhook-endpoints")
    admin = api.tokens["a:admin"]
    r = api.call("POST", path, token=admin, json={"url": url})
    assert r.status == 422 and r.body["errors"][0]["path"] == "url", r.text
    assert r.body["errors"][0]["code"] == "url_not_allowed"
    ep = _create(api)
    r = api.call(
        "PATCH", api.tenant_path("a", f"/webhook-endpoints/{ep['id']}"), token=admin, json={"url": url}
    )
    assert r.status == 422 and r.body["errors"][0]["path"] == "url", r.text
    [row] = fetch(api, WebhookEndpoint, id=uuid.UUID(ep["id"]))
    assert row.url == URL


def test_a_dev_cell_allows_loopback_http_receivers(dev: Api) -> None:
    for url in ("http://127.0.0.1:9123/hook", "http://localhost:8080/x"):
        r = dev.call(
            "POST", dev.tenant_path("a", "/webhook-endpoints"), token=dev.tokens["a:admin"], json={"url": url}
        )
        assert r.status == 201 and r.body["url"] == url, r.text
    r = dev.call(
        "POST",
        dev.tenant_path("a", "/webhook-endpoints"),
        token=dev.tokens["a:admin"],
        json={"url": "http://0.0.0.0:80/"},
    )
    assert r.status == 422 and r.body["errors"][0]["path"] == "url"


def test_other_tenants_endpoints_and_deliveries_are_invisible(api: Api) -> None:
    ep = _create(api)
    delivery = _delivery(api, ep["id"])
    b = api.tokens["b:owner"]
    missing = api.call("GET", api.tenant_path("b", f"/webhook-endpoints/{uuid.uuid4()}"), token=b)
    assert missing.status == 404
    for label in ("a", "b"):
        path = api.tenant_path(label, f"/webhook-endpoints/{ep['id']}")
        for method, rest, body in (
            ("GET", "", None),
            ("PATCH", "", {"enabled": False}),
            ("DELETE", "", None),
            ("GET", "/deliveries", None),
            ("POST", f"/deliveries/{delivery.id}/retry", None),
        ):
            r = api.call(method, path + rest, token=b, json=body)
            # Under a's tenant id b's token is simply not valid (as under an unknown tenant id).
            expected = 404 if label == "b" else 401
            assert r.status == expected, (label, method, rest)
            assert r.body == missing.body or label == "a", (label, method, rest)
    listed = api.call("GET", api.tenant_path("b", "/webhook-endpoints?limit=100"), token=b)
    assert ep["id"] not in [e["id"] for e in listed.body["items"]]
    [row] = fetch(api, WebhookEndpoint, id=uuid.UUID(ep["id"]))
    assert row.enabled is True
    [d] = fetch(api, WebhookDelivery, id=delivery.id)
    assert d.status == "failed"


def test_tenant_homed_elsewhere_is_redirected(api: Api) -> None:
    r = api.call(
        "POST", api.tenant_path("c", "/webhook-endpoints"), token=api.tokens["c:owner"], json={"url": URL}
    )
    assert r.status == 307 and r.headers["Location"].startswith("http://us.cell.test:14210/")
    assert fetch(api, WebhookEndpoint, tenant_id=api.tenants["c"]) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@hooks.example.com/x",
        "https://token@hooks.example.com/x",
        "https://:pass@hooks.example.com/x",
        "https://@hooks.example.com/x",
    ],
)
def test_webhook_urls_may_not_carry_credentials(api: Api, url: str) -> None:
    admin = api.tokens["a:admin"]
    r = api.call("POST", api.tenant_path("a", "/webhook-endpoints"), token=admin, json={"url": url})
    assert r.status == 422, r.text
    [error] = r.body["errors"]
    assert (error["path"], error["code"]) == ("url", "url_not_allowed")
    assert "signature" in error["message"] and "pass" not in r.text.replace("password", "")
    ep = _create(api)
    path = api.tenant_path("a", f"/webhook-endpoints/{ep['id']}")
    r = api.call("PATCH", path, token=admin, json={"url": url})
    assert r.status == 422 and r.body["errors"][0]["code"] == "url_not_allowed", r.text
    assert all("@" not in row.url for row in fetch(api, WebhookEndpoint, tenant_id=api.tenants["a"]))


def test_the_delivery_status_filter_takes_known_statuses_only(api: Api) -> None:
    ep = _create(api)
    _delivery(api, ep["id"], status="retrying", next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
    base = api.tenant_path("a", f"/webhook-endpoints/{ep['id']}/deliveries")
    viewer = api.tokens["a:viewer"]
    for status in ("pending", "retrying", "delivered", "failed"):
        r = api.call("GET", f"{base}?status={status}", token=viewer)
        assert r.status == 200, (status, r.text)
        assert len(r.body["items"]) == (status == "retrying"), status
    for status in ("zzz", "NOPE", "Failed", "deliverd", "", "%00"):
        r = api.call("GET", f"{base}?status={status}", token=viewer)
        assert r.status == 422 and r.body["errors"][0]["path"] == "query.status", (status, r.text)
        assert r.body["errors"][0]["code"] == "enum"
    doc = api.call("GET", "/openapi.json").body
    route = doc["paths"]["/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/deliveries"]
    params = route["get"]["parameters"]
    [status_param] = [p for p in params if p["name"] == "status"]
    assert status_param["schema"]["enum"] == ["pending", "retrying", "delivered", "failed"]
